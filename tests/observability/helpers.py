"""A server process whose log goes to a file, and the clinic records an eligibility check
needs (a payer Organization whose Endpoint is a loopback payer)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.factories import patient
from tests.support.server_process import free_port, server_env, stop_process, wait_ready
from tests.support.store import ROOT, Store
from tests.workflow.helpers import coverage, create, payer_org, post

YEAR = datetime.now(UTC).year


@dataclass
class Running:
    root: str  # http://127.0.0.1:port
    base: str  # root + /fhir
    proc: subprocess.Popen[bytes]
    exit_code: int | None = None


@contextmanager
def running_server(store: Store, log_file: Path, **env: str) -> Iterator[Running]:
    """``python -m fhir_server serve`` on ``store``, its stderr (the log) into ``log_file``;
    stopped with SIGTERM afterwards unless the test stopped it (``exit_code``)."""
    port = free_port()
    with log_file.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve"],
                                env=server_env(store, port, **env), cwd=ROOT, stderr=log)
        root = f"http://127.0.0.1:{port}"
        running = Running(root=root, base=f"{root}/fhir", proc=proc)
        try:
            wait_ready(root, proc)
            yield running
        finally:
            if running.exit_code is None:
                running.exit_code = stop_process(proc, signal.SIGTERM)


@dataclass(frozen=True)
class Insured:
    endpoint: str  # Endpoint/<id>
    patient_id: str
    coverage_id: str


async def insured_patient(http: httpx.AsyncClient, payer_base: str, *,
                          family: str = "Insured") -> Insured:
    """An Endpoint at ``payer_base``, its payer Organization, a Patient and a Coverage."""
    endpoint = await create(http, {
        "resourceType": "Endpoint", "status": "active", "address": payer_base,
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "hl7-fhir-rest"},
        "payloadType": [{"text": "FHIR R4"}]})
    org = await create(http, payer_org("Loopback Health", "LOOP",
                                       endpoint=f"Endpoint/{endpoint['id']}"))
    person = await create(http, patient(family=family))
    cov = await create(http, coverage(patient=f"Patient/{person['id']}",
                                      payer=f"Organization/{org['id']}", member_id="M-1",
                                      start=f"{YEAR}-01-01", end=f"{YEAR}-12-31"))
    return Insured(endpoint=f"Endpoint/{endpoint['id']}", patient_id=person["id"],
                   coverage_id=cov["id"])


async def check_eligibility(http: httpx.AsyncClient, coverage_id: str,
                            headers: dict[str, str] | None = None) -> httpx.Response:
    return await post(http, f"Coverage/{coverage_id}/$eligibility", {
        "resourceType": "Parameters",
        "parameter": [{"name": "serviced", "valueDate": f"{YEAR}-06-01"}]}, headers=headers)


def booked_appointment(patient_id: str, practitioner_id: str) -> dict[str, Any]:
    return {"resourceType": "Appointment", "status": "booked",
            "start": f"{YEAR}-06-01T09:00:00Z", "end": f"{YEAR}-06-01T09:30:00Z",
            "participant": [{"actor": {"reference": f"Patient/{patient_id}"},
                             "status": "accepted"},
                            {"actor": {"reference": f"Practitioner/{practitioner_id}"},
                             "status": "accepted"}]}
