"""Ingest throughput (run by hand): Synthea transaction Bundles, sequential and with
8 concurrent clients, and the NDJSON loader on the 10-patient bulk export.

Each scenario runs on a fresh database through the app in-process (ASGI): the
embedded SQLite, or MongoDB when MONGODB_URI is set. Prints resources per second.
Usage: python bench/ingest_bench.py [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import admin_headers, fresh_settings  # noqa: E402

from fhir_server.cli import load as loader  # noqa: E402
from fhir_server.core.fhirjson import dumps  # noqa: E402
from fhir_server.main import create_app  # noqa: E402
from tools.data_sets import SYNTHEA_BULK, SYNTHEA_BUNDLES  # noqa: E402

BASE = "http://bench/fhir"
MEDIA = {"Content-Type": "application/fhir+json"}


def synthea_bundles() -> list[dict[str, Any]]:
    out = []
    for path in sorted(SYNTHEA_BUNDLES.glob("*.json")):
        bundle = json.loads(path.read_text(), parse_float=Decimal)
        bundle["type"] = "transaction"
        out.append(bundle)
    return out


async def with_app(work: Any) -> float:
    async with fresh_settings("ingest-", fhir_base_url=BASE) as (settings, _):
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE + "/",
                                         timeout=3600, headers=await admin_headers(app)
                                         ) as http:
                start = time.perf_counter()
                await work(http)
                return time.perf_counter() - start


async def post_all(http: httpx.AsyncClient, bundles: list[dict[str, Any]], clients: int) -> None:
    queue = list(bundles)

    async def worker() -> None:
        while queue:
            bundle = queue.pop(0)
            resp = await http.post("", content=dumps(bundle), headers=MEDIA)
            assert resp.status_code == 200, resp.text[:300]

    await asyncio.gather(*(worker() for _ in range(clients)))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    async with fresh_settings("ingest-probe-") as (_, engine):
        bundles = synthea_bundles()
        count = sum(len(b["entry"]) for b in bundles)
        print(f"engine: {engine}; machine: {platform.machine()}, {os.cpu_count()} cores")
        seq = await with_app(lambda http: post_all(http, bundles, 1))
        print(f"Synthea bundles, sequential: {count} resources in {seq:.1f} s, "
              f"{count / seq:.0f} resources/s")
        par = await with_app(lambda http: post_all(http, bundles, args.clients))
        print(f"Synthea bundles, {args.clients} clients: {count} resources in {par:.1f} s, "
              f"{count / par:.0f} resources/s")
        summary: list[loader.Summary] = []

        async def load(http: httpx.AsyncClient) -> None:
            summary.append(await loader.load(http, [SYNTHEA_BULK], progress=False))

        took = await with_app(load)
        print(f"NDJSON loader (synthea-bulk-10): {summary[0].loaded} resources in {took:.1f} s, "
              f"{summary[0].loaded / took:.0f} resources/s, failed {summary[0].failed}")


if __name__ == "__main__":
    asyncio.run(main())
