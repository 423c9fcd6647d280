"""What leases cost: CRUD and bookings, this tree's server against a baseline tree's.

Leases renew themselves by heartbeat and fence the writes made under them (``storage/
locks.py``, ``storage/fence.py``). Plain CRUD takes no lease; a booking takes one per
practitioner and location it schedules, checks for overlaps and writes under them. This
benchmark starts ``python -m fhir_server serve`` (embedded SQLite, ``FHIR_WORKERS`` one per
core, auth off, restarted once after its first start) from this tree and from
``--baseline`` (another checkout, e.g. ``git worktree add /tmp/base <commit>``, run from
its folder), in alternating order over ``--rounds`` rounds, and
sends from 8 clients on loopback: creates of Patients, updates of them, and bookings
(Appointments on 8 practitioners, each in its own hour, so none is refused). Requests per
second and the server's CPU time per request (its supervisor and workers, from /proc),
medians of the rounds, and the change against the baseline. Throughput on a shared
2-core machine swings by tens of percent between rounds; CPU per request is what
heartbeats and fencing would add, and it varies far less.

Usage: python bench/lease_bench.py --baseline DIR [--rounds 5] [--creates 1000]
       [--updates 500] [--bookings 1000]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import server, tree_cpu_seconds  # noqa: E402
from crud_bench import CLIENTS, patient, phase  # noqa: E402

KINDS = ("create", "update", "booking")
PRACTITIONERS = 8
DAY = datetime(2031, 1, 6, tzinfo=UTC)  # bookings far in the future, one hour each


def appointment(n: int, patient_id: str, practitioners: list[str]) -> dict[str, Any]:
    start = DAY + timedelta(hours=n // PRACTITIONERS)
    return {"resourceType": "Appointment", "status": "booked",
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
                            {"actor": {"reference": f"Practitioner/{practitioners[n % PRACTITIONERS]}"},
                             "status": "accepted"}]}


async def run(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="lease-bench-"))
    port = 20000 + random.randrange(1000)
    with server("sqlite", data_dir, port, "off", tree=tree):
        pass
    with server("sqlite", data_dir, port, "off", tree=tree) as env:
        pid = int(env["SERVER_PID"])

        async def measured(count: int, call: Any, expect: int) -> dict[str, float]:
            cpu = tree_cpu_seconds(pid)
            result = await phase(count, call, expect)
            return {**result, "cpu_ms": round((tree_cpu_seconds(pid) - cpu) / count * 1000, 3)}

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/fhir/", timeout=120,
                                     headers={"Accept": "application/fhir+json"},
                                     limits=httpx.Limits(max_connections=CLIENTS)) as http:
            ids: list[str] = []

            async def create(n: int) -> httpx.Response:
                r = await http.post("Patient", json=patient(n))
                ids.append(r.json()["id"])
                return r

            results = {"create": await measured(args.creates, create, 201)}
            results["update"] = await measured(args.updates, lambda n: http.put(
                f"Patient/{ids[n]}", json={**patient(n), "id": ids[n], "gender": "male"}), 200)
            practitioners = [(await http.post("Practitioner", json={
                "resourceType": "Practitioner", "name": [{"family": f"Lease{i}"}]})).json()["id"]
                for i in range(PRACTITIONERS)]
            results["booking"] = await measured(args.bookings, lambda n: http.post(
                "Appointment", json=appointment(n, ids[n % len(ids)], practitioners)), 201)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, required=True, help="another checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--bookings", type=int, default=1000)
    args = parser.parse_args()
    trees = {"baseline": args.baseline.resolve(), "this tree": ROOT}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for n in range(args.rounds):
        order = list(trees) if n % 2 == 0 else list(reversed(trees))
        for name in order:
            result = await run(trees[name], args)
            rounds[name].append(result)
            print(f"round {n + 1} {name}", json.dumps(result), flush=True)
    median = {name: {f"{k} {m}": statistics.median(r[k][m] for r in rounds[name])
                      for k in KINDS for m in ("per_s", "cpu_ms")} for name in trees}
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"medians of {args.rounds} rounds")
    print("| work | measure | baseline | this tree | change |\n|---|---|---|---|---|")
    for key in median["baseline"]:
        base, this = median["baseline"][key], median["this tree"][key]
        kind, measure = key.split()
        label = "requests/s" if measure == "per_s" else "server CPU ms per request"
        print(f"| {kind} | {label} | {base:.3g} | {this:.3g} | {(this - base) / base * 100:+.1f}% |")
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "leases.json").write_text(json.dumps(
        {"rounds": rounds, "median": median, "baseline": str(args.baseline)}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
