"""Terminology: loading ICD-10-CM, and the latency of $lookup, $validate-code, $expand with a
text filter and Condition?code:below=..., through the HTTP API of a server process.

1. ``fhir-server terminology load --pack icd-10-cm`` (then ``--pack fhir-r4``) on a fresh
   embedded SQLite database (the default engine), timed as the operator sees it;
2. a server process on that database (``python -m fhir_server serve``), 10,000 Conditions
   (``--conditions``) coded with random billable ICD-10-CM codes posted in transactions,
   then a fresh server process on it for the measurements;
3. each request ``--reps`` times with varying values after a warm-up, p50 and p95 in ms:
   ``CodeSystem/$lookup`` of a random code; ``ValueSet/$validate-code`` against a value set
   of chapter 19 (about 40,000 codes) with a random code in or out of it;
   ``ValueSet/$expand`` of all of ICD-10-CM with a text filter of one to three words a
   clinician would type (``count=20``); ``Condition?code:below=ICD|<category or block>``
   (the first page and the total).

Usage: python bench/terminology_bench.py [--conditions 10000] [--reps 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.storage_bench import body, server, token  # noqa: E402

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
FILTERS = ("diabetes", "type 2 diab", "diab mell hyperglyc", "asthma", "fract femur",
           "hypertens", "chronic kidney", "pneumonia", "major depress", "heart failure",
           "migraine", "copd", "sprain ankle", "otitis media", "low back pain", "obesity",
           "anemia", "urinary tract infect", "pregnancy", "covid")
CHAPTER_19 = "http://bench.example/vs/injuries"


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


def load(env: dict[str, str], pack: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "fhir_server", "terminology", "load", "--pack", pack,
                    "--init"],
                   env=env, cwd=ROOT, check=True, capture_output=True)
    return time.monotonic() - started


async def timed(http: httpx.AsyncClient, reps: int,
                kinds: dict[str, Callable[[int], str]]) -> dict[str, tuple[float, float]]:
    """p50 and p95 of each kind of request; the kinds take turns, so that a change in the
    machine's load (it is shared) falls on all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for i in range(-5, reps):  # five rounds of warm-up
        for name, make in kinds.items():
            url = make(i)
            started = time.perf_counter()
            r = await http.get(url)
            elapsed = (time.perf_counter() - started) * 1000
            ok(r)
            if i >= 0:
                samples[name].append(elapsed)
            if os.environ.get("BENCH_TRACE") and name == "$lookup" and i % 20 == 0:
                print(i, f"{elapsed:.1f}", url[-20:], flush=True)
    return {name: percentiles(found) for name, found in samples.items()}


def ok(r: httpx.Response) -> None:
    if not 200 <= r.status_code < 300:
        raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text[:300]}")


async def seed(http: httpx.AsyncClient, codes: list[str], n: int) -> None:
    rng = random.Random(1)
    for start in range(0, n, 200):
        entries = [{"resource": {"resourceType": "Condition", "subject": {
            "reference": f"Patient/p{rng.randrange(500)}"}, "code": {"coding": [
                {"system": ICD, "code": rng.choice(codes)}]}},
            "request": {"method": "POST", "url": "Condition"}} for _ in range(min(200, n - start))]
        ok(await http.post("", content=body({"resourceType": "Bundle", "type": "transaction",
                                              "entry": entries}),
                           headers={"Content-Type": "application/fhir+json"}))
    ok(await http.put("ValueSet/injuries", content=body({
        "resourceType": "ValueSet", "id": "injuries", "url": CHAPTER_19, "status": "active",
        "compose": {"include": [{"system": ICD, "filter": [
            {"property": "concept", "op": "is-a", "value": "19"}]}]}}),
        headers={"Content-Type": "application/fhir+json"}))


async def measure(base: str, headers: dict[str, str], conditions: int, reps: int
                  ) -> dict[str, tuple[float, float]]:
    import simple_icd_10_cm as cm

    every = [c for c in cm.get_all_codes(True) if not (cm.is_block(c) and cm.is_category(c))]
    billable = [c for c in every if cm.is_leaf(c) and not cm.is_chapter(c)]
    parents = [c for c in every if (cm.is_category(c) or cm.is_block(c)) and not cm.is_leaf(c)]
    rng = random.Random(2)
    async with httpx.AsyncClient(base_url=base + "/", headers=headers, timeout=120) as http:
        await http.put("ValueSet/icd", content=body({
            "resourceType": "ValueSet", "id": "icd", "url": "http://bench.example/vs/icd",
            "status": "active", "compose": {"include": [{"system": ICD}]}}),
            headers={"Content-Type": "application/fhir+json"})
        n = conditions
        out = await timed(http, reps, {
            "$lookup": lambda i: f"CodeSystem/$lookup?system={ICD}&code={rng.choice(every)}",
            "$validate-code (value set of chapter 19)":
                lambda i: f"ValueSet/$validate-code?url={CHAPTER_19}&system={ICD}"
                          f"&code={rng.choice(billable)}",
            "$expand ICD-10-CM, text filter":
                lambda i: f"ValueSet/icd/$expand?count=20&filter={FILTERS[i % len(FILTERS)]}",
            f"Condition?code:below= at {n} Conditions":
                lambda i: f"Condition?code:below={ICD}|{rng.choice(parents)}",
        })
        out |= await timed(http, max(20, reps // 10), {
            f"Condition?code:in= chapter 19 at {n} Conditions (~3,300 match)":
                lambda i: f"Condition?code:in={CHAPTER_19}"})
    return out


async def seed_all(base: str, headers: dict[str, str], conditions: int) -> None:
    import simple_icd_10_cm as cm

    billable = [c for c in cm.get_all_codes(True) if cm.is_leaf(c) and not cm.is_chapter(c)
                and not (cm.is_block(c) and cm.is_category(c))]
    async with httpx.AsyncClient(base_url=base + "/", headers=headers, timeout=120) as http:
        await seed(http, billable, conditions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conditions", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="term-bench-"))
    port = 18000 + random.randrange(1000)
    os.environ["FHIR_TERMINOLOGY_LOAD"] = "false"  # the loads below are what is timed
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DATABASE")}
    env.update({"FHIR_DATA_DIR": str(data_dir), "FHIR_LOG_LEVEL": "WARNING"})
    seconds = {pack: load(env, pack) for pack in ("icd-10-cm", "fhir-r4")}
    with server("sqlite", data_dir, port, "smart") as env:
        headers = token(env)
        asyncio.run(seed_all(f"http://127.0.0.1:{port}/fhir", headers, args.conditions))
    # Measured on a fresh start, as after a deployment.
    with server("sqlite", data_dir, port, "smart") as env:
        results = asyncio.run(measure(f"http://127.0.0.1:{port}/fhir", headers,
                                      args.conditions, args.reps))
    size = sum(f.stat().st_size for f in data_dir.glob("fhir.sqlite3*"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, SQLite file {size / 2**20:.0f} MiB, load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    for pack, s in seconds.items():
        print(f"load {pack:<10} {s:6.1f} s (fhir-server terminology load, operator's wall time)")
    print(f"{'request':<52} {'p50 ms':>8} {'p95 ms':>8}")
    for name, (p50, p95) in results.items():
        print(f"{name:<52} {p50:8.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()
