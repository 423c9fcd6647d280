"""Storage engines: ingest and search latency at two data sizes, through the HTTP API.

For each size, a fresh server process (``python -m fhir_server serve``, the embedded
SQLite by default, or ``--engine mongo`` for MongoDB/FerretDB) is loaded with cloned
Synthea patients and encounters (one patient to ten encounters) posted as transaction
Bundles of 110 resources: the first tenth from one client, the rest from four. Then:

* ``GET Encounter/[id]`` and a fixed set of searches, each run ``--reps`` times with
  varying values after a warm-up, p50 and p95 in milliseconds;
* the repository's read by id in process (no HTTP) against a bare
  ``SELECT ... WHERE type = ? AND id = ?`` on the same table (SQLite only).

The data is shaped like a clinic's that grows over the years: three encounters a
day (so a week holds about 21 whatever the size), one encounter in a thousand an
emergency (``class`` EMER), and ten encounters changed after the load (what a
``_lastUpdated=gt`` sync query picks up).

Usage: python bench/storage_bench.py [--sizes 10000,100000] [--reps 40] [--engine sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import percentile, server, token  # noqa: E402

from tools.data_sets import SYNTHEA_BULK as DATA  # noqa: E402

MRN = "http://bench.example/mrn"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
FIRST_DAY = date(1940, 1, 1)
PER_DAY = 3
BUNDLE_PATIENTS = 10
ENCOUNTERS_PER_PATIENT = 10
CHANGED = 10


def templates() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def read(name: str) -> list[dict[str, Any]]:
        return [json.loads(line, parse_float=Decimal)
                for line in (DATA / name).read_text().splitlines() if line.strip()]
    encounters = read("Encounter.ndjson")
    for enc in encounters:  # their conditional references point at data not loaded here
        for part in enc.get("participant", []):
            part.pop("individual", None)
        enc.pop("location", None)
        enc.pop("serviceProvider", None)
    return read("Patient.ndjson"), encounters


def patient(tpl: dict[str, Any], n: int) -> dict[str, Any]:
    res = copy.deepcopy(tpl)
    res["id"] = f"pat-{n:07d}"
    res["identifier"] = [{"system": MRN, "value": f"MRN{n:07d}"}]
    res["name"] = [{"family": f"Fam{n:07d}", "given": [f"Given{n % 997}"]}]
    res["birthDate"] = f"{1930 + n % 80:04d}-{1 + n % 12:02d}-{1 + n % 28:02d}"
    return res


def encounter(tpl: dict[str, Any], patient_id: str, n: int) -> dict[str, Any]:
    res = copy.deepcopy(tpl)
    res["id"] = f"enc-{n:08d}"
    res["identifier"] = [{"system": MRN + "/enc", "value": f"ENC{n:08d}"}]
    res["subject"] = {"reference": f"Patient/{patient_id}"}
    res["class"] = {"system": ACT, "code": "EMER" if n % 1000 == 999 else "AMB"}
    day = FIRST_DAY + timedelta(days=n // PER_DAY)
    start = datetime(day.year, day.month, day.day, 8 + n % PER_DAY * 3, tzinfo=UTC)
    res["period"] = {"start": start.isoformat().replace("+00:00", "Z"),
                     "end": (start + timedelta(hours=1)).isoformat().replace("+00:00", "Z")}
    return res


def bundles(size: int) -> list[dict[str, Any]]:
    """Transaction Bundles of 10 patients and their 100 encounters, ``size`` resources."""
    pats, encs = templates()
    out = []
    n_pat = max(1, size // (1 + ENCOUNTERS_PER_PATIENT))
    for first in range(0, n_pat, BUNDLE_PATIENTS):
        entries = []
        for p in range(first, min(first + BUNDLE_PATIENTS, n_pat)):
            pat = patient(pats[p % len(pats)], p)
            entries.append(put(pat))
            for k in range(ENCOUNTERS_PER_PATIENT):
                n = p * ENCOUNTERS_PER_PATIENT + k
                entries.append(put(encounter(encs[n % len(encs)], pat["id"], n)))
        out.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return out


def put(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def body(value: Any) -> bytes:
    from fhir_server.core.fhirjson import dumps

    return dumps(value)


# -- measuring -----------------------------------------------------------------------------

async def ingest(http: httpx.AsyncClient, todo: list[dict[str, Any]], clients: int) -> float:
    """Resources per second posting ``todo`` from ``clients`` concurrent clients."""
    queue = list(reversed(todo))
    count = sum(len(b["entry"]) for b in todo)
    headers = {"Content-Type": "application/fhir+json"}

    async def worker() -> None:
        while queue:
            resp = await http.post("", content=body(queue.pop()), headers=headers)
            assert resp.status_code == 200, resp.text[:500]

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(clients)])
    return count / (time.perf_counter() - start)


def queries(rng: random.Random, n_pat: int, changed_since: str) -> dict[str, str]:
    k = rng.randrange(n_pat)
    pid = f"pat-{k:07d}"
    n_enc = n_pat * ENCOUNTERS_PER_PATIENT
    day = FIRST_DAY + timedelta(days=rng.randrange(n_enc // PER_DAY - 7))
    week = f"date=ge{day.isoformat()}&date=lt{(day + timedelta(days=7)).isoformat()}"
    year = 1940 + (k * ENCOUNTERS_PER_PATIENT // PER_DAY) // 365
    return {
        "read Encounter/[id]": f"Encounter/enc-{rng.randrange(n_enc):08d}",
        "Patient?identifier": f"Patient?identifier={MRN}|MRN{k:07d}",
        "Patient?family (prefix)": f"Patient?family=Fam{k:07d}"[:-1],
        "Encounter?subject": f"Encounter?subject=Patient/{pid}",
        "Encounter?subject&date (range)": f"Encounter?subject=Patient/{pid}&date=ge{year}"
                                          f"&date=lt{year + 2}",
        "Encounter?date (one week)": f"Encounter?{week}",
        "Encounter?_lastUpdated=gt (since the load)": f"Encounter?_lastUpdated=gt{changed_since}",
        "Encounter?_sort=-date&_count=20": "Encounter?_sort=-date&_count=20",
        "Encounter?subject.identifier (chain)": f"Encounter?subject.identifier={MRN}|MRN{k:07d}",
        "Encounter?subject&_include=Encounter:subject":
            f"Encounter?subject=Patient/{pid}&_include=Encounter:subject",
        "Patient?_has:Encounter:patient:class=EMER": "Patient?_has:Encounter:patient:class=EMER",
    }


async def latencies(http: httpx.AsyncClient, n_pat: int, changed_since: str,
                    reps: int) -> dict[str, dict[str, float]]:
    rng = random.Random(7)
    timings: dict[str, list[float]] = {}
    for rep in range(reps + 3):  # three rounds of warm-up
        for label, q in queries(rng, n_pat, changed_since).items():
            t0 = time.perf_counter()
            resp = await http.get(q)
            elapsed = (time.perf_counter() - t0) * 1000
            assert resp.status_code == 200, (q, resp.text[:300])
            if rep >= 3:
                timings.setdefault(label, []).append(elapsed)
    return {label: {"p50_ms": round(statistics.median(v), 1),
                    "p95_ms": round(percentile(v, 0.95), 1)} for label, v in timings.items()}


async def read_rates(data_dir: Path, ids: list[str], rounds: int = 3) -> dict[str, float]:
    """Reads by id per second: the repository in process, and a bare SELECT (same table)."""
    import sqlite3

    from fhir_server.storage.sqlite.repository import SqliteRepository

    repo = SqliteRepository(path=data_dir / "fhir.sqlite3")
    await repo.open()
    bare = sqlite3.connect(data_dir / "fhir.sqlite3", isolation_level=None)
    best_repo = best_bare = 0.0
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            for id_ in ids:
                assert await repo.current(type_="Encounter", id_=id_) is not None
            best_repo = max(best_repo, len(ids) / (time.perf_counter() - start))
            start = time.perf_counter()
            for id_ in ids:
                assert bare.execute("SELECT v, ts, m, json FROM resources WHERE type = ? "
                                    "AND id = ?", ("Encounter", id_)).fetchone() is not None
            best_bare = max(best_bare, len(ids) / (time.perf_counter() - start))
    finally:
        bare.close()
        await repo.close()
    return {"repository_per_s": round(best_repo), "bare_select_per_s": round(best_bare),
            "ratio": round(best_repo / best_bare, 2)}


async def measure(size: int, reps: int, engine: str, auth: str) -> dict[str, Any]:
    todo = bundles(size)
    n_pat = sum(1 for b in todo for e in b["entry"] if e["resource"]["resourceType"] == "Patient")
    total = sum(len(b["entry"]) for b in todo)
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-{size}-"))
    port = 18000 + random.randrange(1000)
    out: dict[str, Any] = {"size": total, "engine": engine, "auth": auth}
    with server(engine, data_dir, port, auth) as env:
        headers = {"Accept": "application/fhir+json", **token(env)}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/fhir/", timeout=600,
                                     headers=headers) as http:
            split = max(1, len(todo) // 10)
            out["ingest_1_client_per_s"] = round(await ingest(http, todo[:split], 1))
            out["ingest_4_clients_per_s"] = round(await ingest(http, todo[split:], 4))
            await asyncio.sleep(0.05)
            changed_since = datetime.now(UTC).isoformat(timespec="milliseconds")
            await asyncio.sleep(0.05)
            rng = random.Random(3)
            for n in rng.sample(range(n_pat * ENCOUNTERS_PER_PATIENT), CHANGED):
                enc = (await http.get(f"Encounter/enc-{n:08d}")).json()
                enc["status"] = "finished"
                assert (await http.put(f"Encounter/{enc['id']}", json=enc)).status_code == 200
            out["latency"] = await latencies(http, n_pat, changed_since.replace("+00:00", "Z"),
                                             reps)
    if engine == "sqlite":
        ids = [f"enc-{random.randrange(n_pat * ENCOUNTERS_PER_PATIENT):08d}"
               for _ in range(20_000)]
        out["read_by_id"] = await read_rates(data_dir, ids)
    return out


def table(runs: list[dict[str, Any]]) -> str:
    head = "| | " + " | ".join(f"{r['size']:,} ({r['engine']}): p50 / p95 ms" for r in runs)
    lines = [head + " |", "|---|" + "---|" * len(runs)]
    for label in runs[0]["latency"]:
        cells = [f"{r['latency'][label]['p50_ms']} / {r['latency'][label]['p95_ms']}"
                 for r in runs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for key in ("ingest_1_client_per_s", "ingest_4_clients_per_s"):
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(str(r[key]) for r in runs)
                     + " |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--engine", choices=("sqlite", "mongo"), default="sqlite")
    parser.add_argument("--auth", choices=("smart", "off"), default="smart")
    parser.add_argument("--out", default="storage.json")
    args = parser.parse_args()
    runs = []
    for size in (int(s) for s in args.sizes.split(",")):
        runs.append(await measure(size, args.reps, args.engine, args.auth))
        print(json.dumps(runs[-1]), flush=True)
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                          f"{platform.python_implementation()} {platform.python_version()}",
               "runs": runs}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / args.out).write_text(json.dumps(results, indent=1))
    print(table(runs))


if __name__ == "__main__":
    asyncio.run(main())
