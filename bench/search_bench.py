"""Search latency at two data sizes (run by hand: `make bench` or python bench/search_bench.py).

Loads N resources (Synthea patients and encounters from ../shared/data/synthea-bulk-10,
cloned with fresh ids, names, identifiers and dates, about one patient for every ten
encounters) straight into the configured database with the server's own stamping and
search-value extraction, then runs a fixed set of selective queries through the app
(in-process ASGI) and reports the median and p95 latency of each at each size.

Uses MONGODB_URI when set, else an embedded FerretDB under a temporary directory.
Usage: python bench/search_bench.py [--sizes 10000,100000] [--reps 7]
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
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import admin_headers, database  # noqa: E402

from fhir_server.config import Settings  # noqa: E402
from fhir_server.interactions import stamp  # noqa: E402
from fhir_server.main import create_app  # noqa: E402
from fhir_server.search.extract import index_resource  # noqa: E402
from fhir_server.storage.model import now_ms  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "synthea-bulk-10"
BASE = "http://bench/fhir"
MRN = "http://bench.example/mrn"


def templates() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def read(name: str) -> list[dict[str, Any]]:
        return [json.loads(line, parse_float=Decimal)
                for line in (DATA / name).read_text().splitlines() if line.strip()]
    encounters = read("Encounter.ndjson")
    for enc in encounters:  # conditional references would need the loader; keep literal ones
        for part in enc.get("participant", []):
            part.pop("individual", None)
        enc.pop("location", None)
        enc.pop("serviceProvider", None)
    return read("Patient.ndjson"), encounters


def clone_patient(tpl: dict[str, Any], n: int) -> dict[str, Any]:
    res = copy.deepcopy(tpl)
    res["id"] = str(uuid.uuid4())
    res["identifier"] = [{"system": MRN, "value": f"MRN{n:07d}"}]
    res["name"] = [{"family": f"Fam{n:07d}", "given": [f"Given{n % 997}"]}]
    res["birthDate"] = f"{1930 + n % 80:04d}-{1 + n % 12:02d}-{1 + n % 28:02d}"
    return res


def clone_encounter(tpl: dict[str, Any], patient_id: str, n: int) -> dict[str, Any]:
    res = copy.deepcopy(tpl)
    res["id"] = str(uuid.uuid4())
    res["identifier"] = [{"system": MRN + "/enc", "value": f"ENC{n:08d}"}]
    res["subject"] = {"reference": f"Patient/{patient_id}"}
    day = n % 3650
    start = f"{2010 + day // 365:04d}-{1 + (day // 30) % 12:02d}-{1 + day % 28:02d}T09:00:00Z"
    res["period"] = {"start": start, "end": start.replace("T09", "T10")}
    return res


async def load(db: Any, size: int) -> dict[str, Any]:
    patients, encounters = templates()
    n_pat = max(1, size // 11)
    docs: dict[str, list[dict[str, Any]]] = {"Patient": [], "Encounter": []}
    pids: list[str] = []
    for i in range(n_pat):
        p = clone_patient(patients[i % len(patients)], i)
        pids.append(p["id"])
        docs["Patient"].append(p)
    for j in range(size - n_pat):
        docs["Encounter"].append(clone_encounter(encounters[j % len(encounters)],
                                                 pids[j % n_pat], j))
    start = time.perf_counter()
    for type_, resources in docs.items():
        batch = []
        for res in resources:
            ts = now_ms()
            batch.append({"_id": res["id"], "v": 1, "ts": ts, "m": "POST",
                          "json": stamp(res, id_=res["id"], version=1, ts=ts),
                          "ix": index_resource(res, base_url=BASE)})
            if len(batch) == 1000:
                await db[type_].insert_many(batch)
                batch = []
        if batch:
            await db[type_].insert_many(batch)
    return {"patients": pids, "load_s": time.perf_counter() - start, "n_pat": n_pat}


def queries(info: dict[str, Any], rng: random.Random) -> dict[str, str]:
    k = rng.randrange(info["n_pat"])
    pid = info["patients"][k]
    return {
        "token (Patient?identifier)": f"Patient?identifier={MRN}|MRN{k:07d}",
        "reference (Encounter?subject)": f"Encounter?subject=Patient/{pid}",
        "date range (Encounter?date, one week)": "Encounter?date=ge2014-03-01&date=lt2014-03-08",
        "string prefix (Patient?family)": f"Patient?family=Fam{k:07d}",
        "chained (Encounter?subject.identifier)": f"Encounter?subject.identifier={MRN}|MRN{k:07d}",
        "_include (Encounter?subject&_include)": f"Encounter?subject=Patient/{pid}"
                                                 "&_include=Encounter:subject",
    }


async def measure(uri: str, size: int, reps: int) -> dict[str, Any]:
    name = f"bench_{size}_{uuid.uuid4().hex[:6]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    try:
        info = await load(client[name], size)
        app = create_app(Settings(mongodb_uri=uri, mongodb_database=name, fhir_base_url=BASE))
        out: dict[str, Any] = {"size": size, "load_s": round(info["load_s"], 1), "queries": {}}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE + "/",
                                         timeout=600, headers=await admin_headers(app)
                                         ) as http:
                rng = random.Random(7)
                timings: dict[str, list[float]] = {}
                for _ in range(reps):
                    for label, q in queries(info, rng).items():
                        t0 = time.perf_counter()
                        resp = await http.get(q)
                        timings.setdefault(label, []).append((time.perf_counter() - t0) * 1000)
                        assert resp.status_code == 200, resp.text[:300]
                for label, values in timings.items():
                    values.sort()
                    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
                    out["queries"][label] = {"median_ms": round(statistics.median(values), 1),
                                             "p95_ms": round(p95, 1)}
        return out
    finally:
        await client.drop_database(name)
        await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    with database("bench-") as (uri, engine):
        results = {"engine": engine, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{platform.python_implementation()} {platform.python_version()}",
                   "runs": []}
        for size in (int(s) for s in args.sizes.split(",")):
            results["runs"].append(await measure(uri, size, args.reps))
            print(json.dumps(results["runs"][-1]), flush=True)
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "search.json").write_text(json.dumps(results, indent=1))
        print(table(results))


def table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    head = "| query | " + " | ".join(f"{r['size']:,}: median / p95 ms" for r in runs) + " |"
    lines = [head, "|---|" + "---|" * len(runs)]
    for label in runs[0]["queries"]:
        cells = [f"{r['queries'][label]['median_ms']} / {r['queries'][label]['p95_ms']}"
                 for r in runs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
