"""What SMART on FHIR and the audit trail cost per request (run by hand).

The same app in-process (ASGI) on a fresh database, once with FHIR_AUTH=off and
once with FHIR_AUTH=smart (token verification, scope and compartment checks, one
queued AuditEvent per request). Measures reads, creates and searches, and checks
that every audited request got its AuditEvent. Uses MONGODB_URI when set, else the
embedded SQLite. Usage: python bench/auth_bench.py [--reads 500] [--writes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import admin_headers, fresh_settings  # noqa: E402

from fhir_server.main import create_app  # noqa: E402
from fhir_server.search.query import EVERYTHING  # noqa: E402

BASE = "http://bench/fhir"


def patient(i: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": f"Bench{i % 50}", "given": ["A"]}],
            "gender": "female", "birthDate": "1970-01-01"}


async def timed(n: int, call: Callable[[int], Awaitable[httpx.Response]]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        r = await call(i)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code < 300, r.text[:200]
    return out


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    return (f"p50 {statistics.median(ms):6.2f} ms  p95 {ms[int(len(ms) * 0.95) - 1]:6.2f} ms  "
            f"mean {statistics.fmean(ms):6.2f} ms")


async def run(mode: str, reads: int, writes: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with fresh_settings(f"authbench-{mode}-", fhir_base_url=BASE, fhir_auth=mode
                              ) as (settings, engine):
        results["engine"] = engine
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            headers = await admin_headers(app) if mode == "smart" else {}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE + "/",
                                         timeout=600, headers=headers) as http:
                results["create"] = await timed(writes, lambda i: http.post(
                    "Patient", json=patient(i)))
                first = (await http.get("Patient?_count=1")).json()["entry"][0]["resource"]
                results["read"] = await timed(reads, lambda i: http.get(
                    f"Patient/{first['id']}"))
                results["search"] = await timed(writes, lambda i: http.get(
                    f"Patient?family=Bench{i % 50}"))
            if mode == "smart":
                audit = app.state.audit
                t0 = time.perf_counter()
                await audit.flush()
                results["flush_ms"] = (time.perf_counter() - t0) * 1000
                results["audit_events"] = await app.state.repo.count(type_="AuditEvent",
                                                                     query=EVERYTHING)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''}"
          f" python {platform.python_version()}")
    for mode in ("off", "smart"):
        r = await run(mode, args.reads, args.writes)
        print(f"FHIR_AUTH={mode} (engine: {r['engine']})")
        for kind in ("read", "create", "search"):
            print(f"  {kind:7s} x{len(r[kind]):4d}: {summary(r[kind])}")
        if mode == "smart":
            expected = args.reads + 2 * args.writes + 1
            print(f"  AuditEvents written: {r['audit_events']} (requests: {expected}); "
                  f"final flush {r['flush_ms']:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
