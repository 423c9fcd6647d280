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
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import admin_headers, database  # noqa: E402

from fhir_server.config import Settings  # noqa: E402
from fhir_server.main import create_app  # noqa: E402
from tests.adapters.hl7v2.helpers import adt, in1, mllp  # noqa: E402
from tests.conftest import free_port, wait_ready  # noqa: E402

BULK = ROOT.parent / "shared" / "data" / "synthea-bulk-10"
BASE = "http://bench/fhir"


async def hl7(uri: str, messages: int, connections: int) -> float:
    port = free_port()
    app = create_app(Settings(mongodb_uri=uri, mongodb_database=f"b_{uuid.uuid4().hex[:10]}",
                              fhir_base_url=BASE, fhir_hl7v2_port=port))
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


async def sync(uri: str) -> tuple[int, float]:
    ehr_db, port = f"b_ehr_{uuid.uuid4().hex[:10]}", free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    env = {**os.environ, "MONGODB_URI": uri, "MONGODB_DATABASE": ehr_db, "FHIR_AUTH": "off",
           "FHIR_PORT": str(port), "FHIR_BASE_URL": base, "FHIR_LOG_LEVEL": "ERROR"}
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve"], env=env, cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        files = [str(BULK / f"{t}.ndjson") for t in ("Organization", "Location",
                                                     "Practitioner", "Patient", "Encounter")]
        subprocess.run([sys.executable, "-m", "fhir_server", "load", *files, "--url", base,
                        "--quiet"], cwd=ROOT, check=True, env=env, capture_output=True)
        app = create_app(Settings(mongodb_uri=uri, fhir_base_url=BASE,
                                  mongodb_database=f"b_{uuid.uuid4().hex[:10]}"))
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
    with database("ehr-bench-") as (uri, engine):
        print(f"engine: {engine}")
        for connections in (1, 4):
            rate = asyncio.run(hl7(uri, args.messages, connections))
            print(f"HL7 v2 ADT^A04 with IN1, {connections} connection(s): "
                  f"{args.messages} messages, {rate:.1f} messages/s")
        created, rate = asyncio.run(sync(uri))
        print(f"FHIR sync of synthea-bulk-10: {created} resources, {rate:.1f} resources/s")


if __name__ == "__main__":
    main()
