"""What leases cost in CPU: creates, updates and bookings in process, this tree against a
baseline tree.

``lease_bench.py`` measures throughput over HTTP, which on a shared 2-core machine swings
by tens of percent from one round to the next. This benchmark measures what heartbeats
and fencing add to the work itself: each tree's app runs in a process of its own (the
embedded SQLite, auth off, no terminology load), driven in that process through
httpx's ASGI transport by one client, one request at a time, and the process's CPU time
(all threads: ``time.process_time``) per request is taken over rounds of ``--count``
requests of each kind. Processes of the two trees alternate (``--pairs`` of them), each
running ``--rounds`` rounds after a warm-up; the figures are the medians over all rounds,
and the change against the baseline. Bookings are Appointments on 8 practitioners, each
in its own hour, so none is refused: each takes a lease, checks for overlaps and writes
under it, fenced.

Usage: python bench/lease_cpu_bench.py --baseline DIR [--pairs 4] [--rounds 6] [--count 150]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("create", "update", "booking")


async def child(count: int, rounds: int) -> dict[str, list[float]]:
    """In the process of one tree (its folder first on PYTHONPATH): CPU ms per request."""
    import httpx
    from crud_bench import patient  # bench/ is this script's folder
    from lease_bench import PRACTITIONERS, appointment

    from fhir_server.core.config import Settings
    from fhir_server.main import create_app

    settings = Settings(fhir_data_dir=Path(tempfile.mkdtemp(prefix="lease-cpu-")),  # type: ignore[call-arg]
                        fhir_auth="off", fhir_terminology_load=False, fhir_log_level="WARNING")
    app = create_app(settings)
    out: dict[str, list[float]] = {k: [] for k in KINDS}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench/fhir/",
            headers={"Accept": "application/fhir+json"}) as http:
        practitioners = [(await http.post("Practitioner", json={
            "resourceType": "Practitioner", "name": [{"family": f"Lease{i}"}]})).json()["id"]
            for i in range(PRACTITIONERS)]
        booked = 0

        async def one_round(record: bool) -> None:
            nonlocal booked
            ids: list[str] = []
            calls = {
                "create": lambda n: http.post("Patient", json=patient(n)),
                "update": lambda n: http.put(f"Patient/{ids[n]}", json={
                    **patient(n), "id": ids[n], "gender": "male"}),
                "booking": lambda n: http.post("Appointment", json=appointment(
                    booked + n, ids[n], practitioners)),
            }
            expect = {"create": 201, "update": 200, "booking": 201}
            for kind in KINDS:
                start = time.process_time()
                for n in range(count):
                    r = await calls[kind](n)
                    assert r.status_code == expect[kind], (kind, r.status_code, r.text[:300])
                    if kind == "create":
                        ids.append(r.json()["id"])
                if record:
                    out[kind].append((time.process_time() - start) / count * 1000)
            booked += count

        await one_round(record=False)  # warm-up: caches, the first writes of each type
        for _ in range(rounds):
            await one_round(record=True)
    return out


def run_child(tree: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "FHIR_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, str(Path(__file__)), "--child", "--count",
                           str(args.count), "--rounds", str(args.rounds)], env=env, cwd=tree,
                          capture_output=True, text=True, check=True)
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, help="another checkout")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.count, args.rounds))))
        return
    if args.baseline is None:
        parser.error("--baseline is required")
    trees = {"baseline": args.baseline.resolve(), "this tree": ROOT}
    rounds: dict[str, dict[str, list[float]]] = {name: {k: [] for k in KINDS} for name in trees}
    loads = [os.getloadavg()[0]]
    for n in range(args.pairs):
        for name in (list(trees) if n % 2 == 0 else list(reversed(trees))):
            result = run_child(trees[name], args)
            for k in KINDS:
                rounds[name][k].extend(result[k])
            loads.append(os.getloadavg()[0])
            print(f"pair {n + 1} {name}", json.dumps(
                {k: [round(v, 3) for v in result[k]] for k in KINDS}), flush=True)
    median = {name: {k: statistics.median(rounds[name][k]) for k in KINDS} for name in trees}
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {min(loads):.1f} to "
          f"{max(loads):.1f}; CPU ms per request, medians of {args.pairs * args.rounds} "
          f"rounds of {args.count}")
    print("| work | baseline | this tree | change |\n|---|---|---|---|")
    for k in KINDS:
        base, this = median["baseline"][k], median["this tree"][k]
        print(f"| {k} | {base:.3f} | {this:.3f} | {(this - base) / base * 100:+.1f}% |")
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "lease_cpu.json").write_text(json.dumps(
        {"rounds": rounds, "median": median, "baseline": str(args.baseline),
         "load": [min(loads), max(loads)]}, indent=1))


if __name__ == "__main__":
    main()
