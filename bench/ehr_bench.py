"""EHR adapters' throughput (run by hand): HL7 v2 ADT^A04 messages with IN1 per second
over MLLP, from one connection and from four; and resources per second of a FHIR sync
(``Endpoint/[id]/$sync``) of the Synthea bulk export from an EHR (this server in a second
process, SMART off). Each scenario runs on a fresh database.
Usage: python bench/ehr_bench.py [--messages 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import admin_headers, fresh_settings  # noqa: E402

from fhir_server.core.config import Settings  # noqa: E402
from fhir_server.main import create_app  # noqa: E402
from tests.adapters.hl7v2.helpers import adt, in1, mllp  # noqa: E402
from tests.conftest import free_port, wait_ready  # noqa: E402
from tools.data_sets import SYNTHEA_BULK as BULK  # noqa: E402

BASE = "http://bench/fhir"


async def hl7(messages: int, connections: int) -> float:
    port = free_port()
    async with fresh_settings("ehr-bench-hl7-", fhir_base_url=BASE, fhir_hl7v2_port=port
                              ) as (settings, _):
        return await _hl7(settings, port, messages, connections)


async def _hl7(settings: Settings, port: int, messages: int, connections: int) -> float:
    app = create_app(settings)
    texts = [adt("A04", mrn=f"P{n:05d}", visit=f"V{n:05d}", given=f"G{n}",
                 insurance=[in1(member=f"M-{n}")]) for n in range(messages)]
    async with app.router.lifespan_context(app):
        async def sender(share: list[str]) -> None:
            async with mllp(port) as conn:
                for text in share:
                    ack = await conn.send(text)
                    assert ack.code == "AA", ack.text

        start = time.perf_counter()
        await asyncio.gather(*(sender(texts[i::connections]) for i in range(connections)))
        return messages / (time.perf_counter() - start)


async def sync() -> tuple[int, float]:
    async with fresh_settings("ehr-bench-ehr-") as (ehr, _), \
            fresh_settings("ehr-bench-clinic-", fhir_base_url=BASE) as (clinic, _):
        return await _sync(ehr, clinic)


async def _sync(ehr: Settings, clinic: Settings) -> tuple[int, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    env = {**{k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DATABASE")},
           "FHIR_DATA_DIR": str(ehr.fhir_data_dir), "FHIR_AUTH": "off",
           "FHIR_PORT": str(port), "FHIR_BASE_URL": base, "FHIR_LOG_LEVEL": "ERROR",
           **({"MONGODB_URI": ehr.mongodb_uri, "MONGODB_DATABASE": ehr.mongodb_database}
              if ehr.mongodb_uri else {})}
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve"], env=env, cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        files = [str(BULK / f"{t}.ndjson") for t in ("Organization", "Location",
                                                     "Practitioner", "Patient", "Encounter")]
        subprocess.run([sys.executable, "-m", "fhir_server", "load", *files, "--url", base,
                        "--quiet"], cwd=ROOT, check=True, env=env, capture_output=True)
        app = create_app(clinic)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE + "/", timeout=None,
                                         headers=await admin_headers(app)) as http:
                r = await http.post("Endpoint", json={
                    "resourceType": "Endpoint", "status": "active", "address": base,
                    "connectionType": {"code": "hl7-fhir-rest"}, "payloadType": [{"text": "R4"}]})
                start = time.perf_counter()
                answer = await http.post(f"Endpoint/{r.json()['id']}/$sync",
                                         json={"resourceType": "Parameters"})
                seconds = time.perf_counter() - start
                assert answer.status_code == 200, answer.text
                created = sum(p["valueInteger"] for result in answer.json()["parameter"]
                              for p in result["part"] if p["name"] == "created")
                return created, created / seconds
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    engine = "MongoDB (MONGODB_URI)" if os.environ.get("MONGODB_URI") else "embedded SQLite"
    print(f"engine: {engine}")
    for connections in (1, 4):
        rate = asyncio.run(hl7(args.messages, connections))
        print(f"HL7 v2 ADT^A04 with IN1, {connections} connection(s): "
              f"{args.messages} messages, {rate:.1f} messages/s")
    created, rate = asyncio.run(sync())
    print(f"FHIR sync of synthea-bulk-10: {created} resources, {rate:.1f} resources/s")


if __name__ == "__main__":
    main()
