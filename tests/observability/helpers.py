"""The clinic records an eligibility check needs (a payer Organization whose Endpoint is a
loopback payer)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.factories import appointment, coverage, patient, payer_org
from tests.workflow.helpers import create, post

YEAR = datetime.now(UTC).year


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
    return appointment(f"Patient/{patient_id}", [f"Practitioner/{practitioner_id}"],
                       f"{YEAR}-06-01T09:00:00Z", f"{YEAR}-06-01T09:30:00Z")
