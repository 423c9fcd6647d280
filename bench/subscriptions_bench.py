"""Rest-hook Subscriptions: commit to delivery latency, and what they cost the writes.

Starts ``python -m fhir_server serve`` (the embedded SQLite, FHIR_WORKERS=2, auth off) and
a receiver process on loopback (a bare asyncio HTTP server) that notes, per notification, when
it arrived, its event number and the resource's ``meta.lastUpdated`` (the commit instant,
to the millisecond). Then:

1. **Writes without Subscriptions**: ``--creates`` Observations from 8 clients on a fresh
   server; creates per second.
2. **Writes with 10 Subscriptions**: the same on a fresh server with 10 active rest-hook
   Subscriptions (``Observation?status=final``, full-resource payload), each notified of
   every create while the writes go on; creates per second (target: within 10% of 1).
   Steps 1 and 2 alternate for ``--rounds`` rounds (default 3), each on a fresh server;
   the median of the rounds' ratios is the figure (one round's ratio moves by a few
   hundredths with the machine).
3. **Latency at 200 writes/s**: on the last round's server, creates paced at ``--rate`` per second for
   ``--seconds``; commit to arrival for each of the 10 Subscriptions' notifications of
   them, p50 and p95 (targets: 50 ms and 250 ms).

Usage: python bench/subscriptions_bench.py [--creates 3000] [--rate 200] [--seconds 10]
       [--rounds 3] [--kind topic|classic]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import free_port, percentile, server  # noqa: E402

CLIENTS = 8
SUBSCRIPTIONS = 10

# The receiver: a bare HTTP/1.1 server on asyncio (requests with a Content-Length body,
# kept alive), so that it takes as little as possible of the CPU it shares with the server
# under test; a real receiver runs elsewhere.
RECEIVER = """
import asyncio, sys, time
import orjson

out = open(sys.argv[2], "a", buffering=1)

class Hook(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\\r\\n\\r\\n")
            if end < 0:
                return
            lines = self.buffer[:end].decode("latin-1").split("\\r\\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:])
            size = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + size:
                return
            body = self.buffer[end + 4:end + 4 + size]
            self.buffer = self.buffer[end + 4 + size:]
            arrived = time.time()
            sub = lines[0].split(" ")[1].split("/")[1]
            number = headers.get("x-fhir-event-number")
            resource = orjson.loads(body) if body else {}
            if resource.get("resourceType") != "Bundle":  # classic: the resource, or none
                updated = resource["meta"]["lastUpdated"] if body else "-"
                out.write(f"{arrived} {number} {sub} {updated}\\n")
            elif number is not None:  # topic-based: each event's resource (no handshake)
                for entry in resource["entry"][1:]:
                    updated = entry["resource"]["meta"]["lastUpdated"]
                    out.write(f"{arrived} {number} {sub} {updated}\\n")
            self.transport.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 0\\r\\n\\r\\n")

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Hook, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
"""


def observation(n: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"text": "heart rate"}, "valueQuantity": {"value": 60 + n % 40}}


def session() -> aiohttp.ClientSession:
    """The load generator's client: aiohttp, which takes a tenth of httpx's CPU per request
    (the load shares the machine with the server under test)."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120),
                                 connector=aiohttp.TCPConnector(limit=0))


async def post(http: aiohttp.ClientSession, base: str, n: int) -> str:
    async with http.post(f"{base}/Observation", data=orjson.dumps(observation(n)),
                         headers={"Content-Type": "application/fhir+json"}) as r:
        body = await r.read()
        assert r.status == 201, body[:200]
        return str(orjson.loads(body)["id"])


async def creates(base: str, count: int) -> float:
    """``count`` creates from 8 clients as fast as they go; per second."""
    todo = list(range(count))
    async with session() as http:
        async def client() -> None:
            while todo:
                await post(http, base, todo.pop())

        start = time.perf_counter()
        await asyncio.gather(*[client() for _ in range(CLIENTS)])
        return count / (time.perf_counter() - start)


async def paced(base: str, rate: int, seconds: float) -> list[str]:
    """Creates at ``rate`` per second for ``seconds``; the ids written."""
    ids: list[str] = []
    async with session() as http:
        async def one(n: int) -> None:
            ids.append(await post(http, base, n))

        start = time.perf_counter()
        tasks = []
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return ids


BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


def subscription(kind: str, base: str, endpoint: str) -> dict[str, Any]:
    """A rest-hook Subscription to every final Observation, notified with the resource:
    R4's classic (a PUT per resource) or the Backport IG's (Bundles of up to 100 events)."""
    if kind == "classic":
        return {"resourceType": "Subscription", "status": "requested", "reason": "bench",
                "criteria": "Observation?status=final",
                "channel": {"type": "rest-hook", "endpoint": endpoint,
                            "payload": "application/fhir+json"}}
    return {
        "resourceType": "Subscription", "meta": {"profile": [f"{BACKPORT}/backport-subscription"]},
        "status": "requested", "reason": "bench",
        "criteria": f"{base}/SubscriptionTopic/Observation",
        "_criteria": {"extension": [{"url": f"{BACKPORT}/backport-filter-criteria",
                                     "valueString": "Observation?status=final"}]},
        "channel": {"type": "rest-hook", "endpoint": endpoint,
                    "payload": "application/fhir+json",
                    "_payload": {"extension": [{"url": f"{BACKPORT}/backport-payload-content",
                                                "valueCode": "full-resource"}]},
                    "extension": [{"url": f"{BACKPORT}/backport-max-count",
                                   "valuePositiveInt": 100}]}}


async def subscribe(base: str, hook: str, kind: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        ids = []
        for n in range(SUBSCRIPTIONS):
            r = await http.post("Subscription", json=subscription(kind, base, f"{hook}/s{n}"))
            assert r.status_code == 201, r.text[:300]
            ids.append(r.json()["id"])
        deadline = time.monotonic() + 60
        while True:
            states = [(await http.get(f"Subscription/{i}")).json()["status"] for i in ids]
            if all(s == "active" for s in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Subscriptions not active: {states}")
            await asyncio.sleep(0.2)


def arrivals(log: Path) -> list[tuple[float, int, str, str]]:
    out = []
    for line in log.read_text().splitlines():
        at, number, sub, updated = line.split(" ")
        out.append((float(at), int(number), sub, updated))
    return out


def instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    env_before = dict(os.environ)
    os.environ["FHIR_SUBSCRIPTION_ALLOWED_HOSTS"] = "127.0.0.1"
    results: dict[str, Any] = {"without": [], "with": []}
    log = Path(tempfile.mkdtemp(prefix="subs-receiver-")) / "arrivals.txt"
    hook_port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(hook_port), str(log)])
    try:
        time.sleep(1.5)
        for round_ in range(args.rounds):  # alternating, each on a fresh server
            results["without"].append(await _without(args))
            last = round_ == args.rounds - 1
            results["with"].append(await _with(args, log, f"http://127.0.0.1:{hook_port}",
                                               results if last else None))
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
        os.environ.clear()
        os.environ.update(env_before)
    return results


async def _without(args: argparse.Namespace) -> int:
    port = free_port()
    with server("sqlite", Path(tempfile.mkdtemp(prefix="subs-none-")), port, "off", workers=2):
        base = f"http://127.0.0.1:{port}/fhir"
        await creates(base, args.creates // 5)  # warm-up
        return round(await creates(base, args.creates))


async def _with(args: argparse.Namespace, log: Path, hook: str,
                latency: dict[str, Any] | None) -> int:
    """Creates/s with the Subscriptions; then, given ``latency``, the paced phase's figures
    put there."""
    port = free_port()
    with server("sqlite", Path(tempfile.mkdtemp(prefix="subs-ten-")), port, "off", workers=2):
        base = f"http://127.0.0.1:{port}/fhir"
        mark = len(arrivals(log)) if log.exists() else 0
        await subscribe(base, hook, args.kind)
        await creates(base, args.creates // 5)  # warm-up
        rate = round(await creates(base, args.creates))
        await drain(log, expect=mark + SUBSCRIPTIONS * (args.creates + args.creates // 5))
        if latency is None:
            return rate
        mark = len(arrivals(log))
        ids = await paced(base, args.rate, args.seconds)
        got = await drain(log, expect=mark + SUBSCRIPTIONS * len(ids))
    latencies = [(at - instant(updated)) * 1000 for at, _, _, updated in got[mark:]]
    latency.update(
        paced_writes=len(ids), notifications=len(latencies),
        latency_p50_ms=round(statistics.median(latencies), 1),
        latency_p95_ms=round(percentile(latencies, 0.95), 1),
        latency_max_ms=round(max(latencies), 1))
    return rate


async def drain(log: Path, *, expect: int, timeout: float = 300.0
                ) -> list[tuple[float, int, str, str]]:
    """Wait until ``expect`` notifications arrived (every Subscription's, in all)."""
    deadline = time.monotonic() + timeout
    while True:
        got = arrivals(log) if log.exists() else []
        if len(got) >= expect:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(got)} notifications arrived, not {expect}")
        await asyncio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--creates", type=int, default=3000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds without and with the Subscriptions, each on "
                             "a fresh server; the latency is measured in the last")
    parser.add_argument("--kind", choices=("topic", "classic"), default="topic",
                        help="Backport IG topic-based Subscriptions (the default), or R4's "
                             "classic ones")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = asyncio.run(run(args))
    ratios = [w / n for n, w in zip(results["without"], results["with"], strict=True)]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average at start {load:.2f}")
    for n, (without, with_, ratio) in enumerate(zip(results["without"], results["with"], ratios,
                                                    strict=True), 1):
        print(f"round {n}: creates/s without Subscriptions {without}, with {SUBSCRIPTIONS} "
              f"{args.kind} {with_} ({ratio:.2f})")
    print(f"median ratio of {len(ratios)} rounds: {statistics.median(ratios):.2f} "
          f"(target >= 0.90)")
    print(f"at {args.rate} writes/s for {args.seconds:.0f} s: {results['paced_writes']} writes, "
          f"{results['notifications']} notifications; commit to arrival p50 "
          f"{results['latency_p50_ms']} ms (target < 50), p95 {results['latency_p95_ms']} ms "
          f"(target < 250), max {results['latency_max_ms']} ms")


if __name__ == "__main__":
    main()
