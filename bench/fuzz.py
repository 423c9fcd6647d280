"""A fuzzer of the HTTP API (run by hand): no odd request may get a 5xx.

Starts ``python -m fhir_server serve`` on a fresh data directory (the embedded SQLite, or
``--engine mongo``: FerretDB standing in for MongoDB), stores some of the vendored R4
examples, then sends ``--requests`` requests from ``--clients`` concurrent clients: mutated
examples as creates, updates and patches (JSON Patch, FHIRPath Patch), transactions and
batches, searches over every search parameter the CapabilityStatement lists, operations
with garbage bodies, odd headers (tools/fuzz_requests.py makes them, tools/fuzz_values.py
mutates). The requests follow from ``--seed`` alone (printed; request N is the same in
every run of a seed, whatever the clients' timing), so ``--seed S --only N`` replays one.

Reports counts by status code and, for every 5xx, the request and the server's log lines
of its request id (the server's stderr is captured to a file). Exits 1 on any 5xx or
transport error.

Usage: python bench/fuzz.py [--requests 20000] [--seed N] [--engine sqlite|mongo]
                            [--auth smart|off|patient] [--clients 4] [--only N]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import free_port, server, token  # noqa: E402

from tools.data_sets import EXAMPLES  # noqa: E402
from tools.fuzz_requests import Capability, Fuzzer, FuzzRequest, load_examples  # noqa: E402

SEED_EXAMPLES = 150
TIMEOUT = 120.0


def patient_token(env: dict[str, str], patient: str) -> dict[str, str]:
    """A patient/*.cruds token for ``patient`` from the operator CLI (a backend client)."""
    cli = [sys.executable, "-m", "fhir_server"]
    scope = "patient/*.cruds"
    # an app (a backend client may only have system/ scopes)
    subprocess.run([*cli, "clients", "add", "--id", "fuzz-patient", "--redirect-uri",
                    "http://127.0.0.1/cb", "--scope", scope], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    out = subprocess.run([*cli, "token", "--client", "fuzz-patient", "--scope", scope,
                          "--patient", patient], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return {"Authorization": f"Bearer {out.stdout.strip().splitlines()[-1]}"}


async def send(http: httpx.AsyncClient, req: FuzzRequest,
               auth: dict[str, str]) -> httpx.Response:
    url = http.base_url.copy_with(raw_path=http.base_url.raw_path + req.path.encode())
    headers = {"Accept": "application/fhir+json", **auth, **req.headers}
    return await http.request(req.method, url, content=req.body, headers=headers)


class Tally:
    def __init__(self) -> None:
        self.statuses: collections.Counter[str] = collections.Counter()
        self.failures: list[tuple[FuzzRequest, str, str]] = []  # request, status, request id

    def record(self, req: FuzzRequest, status: str, rid: str = "") -> None:
        self.statuses[status] += 1
        if not status.isdigit() or int(status) >= 500:
            self.failures.append((req, status, rid))


async def fuzz(base: str, fuzzer: Fuzzer, total: int, clients: int, auth: dict[str, str],
               only: int | None) -> Tally:
    tally = Tally()
    lock = asyncio.Lock()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            while True:
                async with lock:  # requests are made in order: request N follows from the seed
                    if fuzzer.count >= total:
                        return
                    req = fuzzer.next()
                    if req.number % 2000 == 0:
                        print(f"  {req.number} requests made", flush=True)
                if only is not None and req.number != only:
                    continue
                try:
                    resp = await send(http, req, auth)
                    tally.record(req, str(resp.status_code), resp.headers.get("X-Request-Id", ""))
                except httpx.HTTPError as exc:
                    tally.record(req, type(exc).__name__)

    await asyncio.gather(*(client() for _ in range(clients)))
    return tally


def log_lines(log: Path, rid: str) -> list[str]:
    if not rid:
        return []
    return [line for line in log.read_text(errors="replace").splitlines() if rid in line]


def report(tally: Tally, log: Path, seconds: float, args: argparse.Namespace) -> None:
    total = sum(tally.statuses.values())
    print(f"\nfuzz: {total} requests, seed {args.seed}, engine {args.engine}, auth {args.auth}, "
          f"{args.clients} clients, {seconds:.0f} s")
    for status, count in sorted(tally.statuses.items()):
        print(f"  {status}: {count}")
    kinds = collections.Counter(req.kind for req, _, _ in tally.failures)
    print(f"5xx and transport errors: {len(tally.failures)} {dict(kinds)}")
    for req, status, rid in tally.failures:
        print(f"\n[{status}] {req.excerpt()}")
        for line in log_lines(log, rid)[:3]:
            print(f"    log: {line[:2000]}")


async def main_async(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="fuzz-"))
    log = data_dir / "server.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir/"
    with log.open("w") as stderr, server(args.engine, data_dir, port,
                                         "off" if args.auth == "off" else "smart",
                                         stderr=stderr) as env:
        admin = token(env)
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT, headers=admin) as http:
            statement = (await http.get("metadata")).json()
            capability = Capability.parse(statement)
            fuzzer = Fuzzer(args.seed, capability, load_examples(EXAMPLES, set(capability.params)))
            stored = 0
            for req in fuzzer.seed_requests(SEED_EXAMPLES):
                stored += (await send(http, req, {})).status_code < 300
            print(f"stored {stored} of {SEED_EXAMPLES} examples", flush=True)
            auth = admin
            if args.auth == "patient":  # the token's patient, made here so that it exists
                made = await http.post("Patient", json={"resourceType": "Patient",
                                                        "name": [{"family": "Fuzz"}]})
                auth = patient_token(env, f"Patient/{made.json()['id']}")
        started = time.monotonic()
        tally = await fuzz(base, fuzzer, args.requests, args.clients, auth, args.only)
        seconds = time.monotonic() - started
    report(tally, log, seconds, args)
    print(f"server log: {log}")
    return 1 if tally.failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--engine", choices=["sqlite", "mongo"], default="sqlite")
    parser.add_argument("--auth", choices=["smart", "off", "patient"], default="smart")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--only", type=int, help="send only request number N of the seed")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    print(f"fuzz seed {args.seed} (replay: --seed {args.seed})", flush=True)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
