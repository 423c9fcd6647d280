"""Plain CRUD over HTTP: creates, reads by id and updates from 8 concurrent clients.

A server process (``python -m fhir_server serve``: the embedded SQLite by default,
``FHIR_WORKERS`` processes, one per core unless ``--workers``; restarted once after its
first start on a fresh database) takes, from 8 clients on loopback, 2,000 creates of
Patients, 5,000 reads by id and 1,000 updates, once with ``FHIR_AUTH=off`` and once with
SMART on (every request carrying a token, every request audited). Reports requests per
second and p50/p95 latency.

One run of a phase takes seconds, and on a small machine, where the clients share the
cores with the server, two runs differ by 10 to 20%. So the benchmark runs ``--rounds``
rounds (each mode on a fresh database each round, the order of the modes alternating
between rounds so that neither always runs first), reports every round, and compares
the modes on their medians.

Usage: python bench/crud_bench.py [--rounds 5] [--creates 2000] [--reads 5000] [--updates 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import percentile, server, token  # noqa: E402

CLIENTS = 8
TARGETS = {"create": 200, "read": 400, "update": 160}  # per second, FHIR_AUTH=off


def patient(n: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:bench", "value": str(n)}],
            "name": [{"family": f"Crud{n}", "given": ["Bench"]}], "gender": "female",
            "birthDate": f"{1940 + n % 60}-0{1 + n % 9}-1{n % 9}"}


async def phase(count: int, call: Callable[[int], Awaitable[httpx.Response]],
                expect: int) -> dict[str, float]:
    """``count`` calls spread over the clients; requests per second and latencies."""
    todo = list(range(count))
    times: list[float] = []

    async def client() -> None:
        while todo:
            n = todo.pop()
            t0 = time.perf_counter()
            r = await call(n)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == expect, (r.status_code, r.text[:300])

    start = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(CLIENTS)])
    elapsed = time.perf_counter() - start
    return {"per_s": round(count / elapsed), "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(percentile(times, 0.95), 1)}


async def run(auth: str, args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"crud-{auth}-"))
    port = 19000 + random.randrange(1000)
    # A first start does first-start work (the terminology packs, the signing key) and
    # leaves its write-ahead log to be checkpointed; measure a server as it runs every day.
    with server("sqlite", data_dir, port, auth, workers=args.workers):
        pass
    with server("sqlite", data_dir, port, auth, workers=args.workers) as env:
        headers = {"Accept": "application/fhir+json", **token(env)}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/fhir/", timeout=120,
                                     headers=headers,
                                     limits=httpx.Limits(max_connections=CLIENTS)) as http:
            ids: list[str] = []

            async def create(n: int) -> httpx.Response:
                r = await http.post("Patient", json=patient(n))
                ids.append(r.json()["id"])
                return r

            results = {"create": await phase(args.creates, create, 201)}
            results["read"] = await phase(
                args.reads, lambda n: http.get(f"Patient/{ids[n % len(ids)]}"), 200)
            # Each client updates its own resources: no two updates race for one version.
            results["update"] = await phase(args.updates, lambda n: http.put(
                f"Patient/{ids[n]}", json={**patient(n), "id": ids[n], "gender": "male"}), 200)
    return results


def median_of(rounds: list[dict[str, Any]], kind: str) -> dict[str, float]:
    """Per interaction, the median of the rounds' rates and latencies."""
    return {stat: round(statistics.median(r[kind][stat] for r in rounds), 1)
            for stat in ("per_s", "p50_ms", "p95_ms")}


def table(out: dict[str, Any]) -> str:
    rows = ["| interaction | auth off: per s / p50 / p95 ms | SMART on: per s / p50 / p95 ms "
            "| SMART vs off | target (off) |", "|---|---|---|---|---|"]
    for kind, target in TARGETS.items():
        off, smart = out["median"]["off"][kind], out["median"]["smart"][kind]
        cells = [f"{m['per_s']:.0f} / {m['p50_ms']} / {m['p95_ms']}" for m in (off, smart)]
        change = (smart["per_s"] - off["per_s"]) / off["per_s"] * 100
        rows.append(f"| {kind} | {cells[0]} | {cells[1]} | {change:+.0f}% | {target} |")
    return "\n".join(rows)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None,
                        help="FHIR_WORKERS (default: the server's own, one per core)")
    args = parser.parse_args()
    out: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{platform.python_implementation()} {platform.python_version()}",
        "workers": args.workers or os.cpu_count(), "rounds": {"off": [], "smart": []}}
    for n in range(args.rounds):
        for auth in (("off", "smart") if n % 2 == 0 else ("smart", "off")):
            result = await run(auth, args)
            out["rounds"][auth].append(result)
            print(f"round {n + 1} {auth}", json.dumps(result), flush=True)
    out["median"] = {auth: {kind: median_of(out["rounds"][auth], kind) for kind in TARGETS}
                     for auth in ("off", "smart")}
    print(f"medians of {args.rounds} rounds")
    print(table(out))
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "crud.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
