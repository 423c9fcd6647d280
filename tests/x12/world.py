"""The clinic's records for the X12 tests, and the loopback clearinghouse process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from tests.support.server_process import free_port
from tests.support.store import ROOT
from tests.workflow.helpers import by_type, create, post
from tests.x12.edi import Line, Paid, remittance_835, remittance_835_claims

CPT = "http://www.ama-assn.org/go/cpt"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NPI = "http://hl7.org/fhir/sid/us-npi"
TAX_ID = "urn:oid:2.16.840.1.113883.4.4"
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
X12_CONNECTION = "https://fhir-rcm-server.org/CodeSystem/endpoint-connection-type"
X12_PARTNER = "https://fhir-rcm-server.org/StructureDefinition/x12-partner"
# The bill: a consultation at 400 and a blood test at 250, here with CPT codes.
PRICES = {"99213": Decimal("400"), "85025": Decimal("250")}
CLINIC_NPI, CLINIC_TIN, PAYER_ID, PAYER_TIN = "1234567893", "12-3456789", "ACME1", "987654321"
SENDER, RECEIVER = "CLINIC01", "CH01"
PLAN = {"name": "GOLD PPO", "copay": "30", "deductible": "500", "coinsurance": "0.2",
        "out_of_pocket": "3000"}


def clearinghouse_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.x12.clearinghouse", str(port)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the clearinghouse did not start")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def setup_clinic(http: httpx.AsyncClient, clearinghouse: str) -> dict[str, Any]:
    r = await http.put("Organization/clinic", json={
        "resourceType": "Organization", "id": "clinic", "name": "Springfield Clinic",
        "identifier": [{"system": NPI, "value": CLINIC_NPI}, {"system": TAX_ID, "value": CLINIC_TIN}],
        "telecom": [{"system": "phone", "value": "(555) 555-1234"}],
        "address": [{"line": ["1 Main St"], "city": "Springfield", "state": "IL",
                     "postalCode": "62701-1234"}]})
    assert r.status_code in (200, 201), r.text
    endpoint = await create(http, {
        "resourceType": "Endpoint", "status": "active", "address": clearinghouse,
        "connectionType": {"system": X12_CONNECTION, "code": "x12-5010"},
        "payloadType": [{"text": "X12 5010"}],
        "extension": [{"url": X12_PARTNER, "extension": [
            {"url": "sender", "valueString": SENDER}, {"url": "receiver", "valueString": RECEIVER},
            {"url": "usage", "valueCode": "T"}]}]})
    payer = await create(http, {
        "resourceType": "Organization", "name": "Acme Health", "active": True,
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "NIIP"}]},
                        "system": "urn:example:payer-id", "value": PAYER_ID}],
        "endpoint": [{"reference": f"Endpoint/{endpoint['id']}"}]})
    for code, price in PRICES.items():
        await create(http, {
            "resourceType": "ChargeItemDefinition", "url": f"urn:example:price/{code}",
            "status": "active", "date": "2026-01-01", "code": {"coding": [{"system": CPT,
                                                                          "code": code}]},
            "propertyGroup": [{"priceComponent": [{"type": "base", "amount": {
                "value": price, "currency": "USD"}}]}]})
    location = await create(http, {"resourceType": "Location", "name": "Room 1", "type": [
        {"coding": [{"system": POS, "code": "11", "display": "Office"}]}]})
    return {"payer": f"Organization/{payer['id']}", "endpoint": f"Endpoint/{endpoint['id']}",
            "location": f"Location/{location['id']}"}


async def patient_with_coverage(http: httpx.AsyncClient, world: dict[str, Any], *,
                                member: str, family: str = "Chalmers") -> dict[str, Any]:
    year = datetime.now(UTC).year
    patient = await create(http, {
        "resourceType": "Patient", "name": [{"family": family, "given": ["Peter"]}],
        "gender": "male", "birthDate": "1974-12-25",
        "address": [{"line": ["2 Elm St"], "city": "Springfield", "state": "IL",
                     "postalCode": "62701"}]})
    coverage = await create(http, {
        "resourceType": "Coverage", "status": "active", "subscriberId": member,
        "beneficiary": {"reference": f"Patient/{patient['id']}"},
        "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                                     "code": "self"}]},
        "payor": [{"reference": world["payer"]}],
        "period": {"start": f"{year}-01-01", "end": f"{year}-12-31"}})
    return {"patient": patient, "coverage": coverage}


async def bill(http: httpx.AsyncClient, world: dict[str, Any], patient: dict[str, Any],
               diagnosis: str = "J06.9") -> dict[str, list[dict[str, Any]]]:
    """A visit with a diagnosis, billed 99213 + 85025 from the price list."""
    pid = f"Patient/{patient['id']}"
    condition = await create(http, {
        "resourceType": "Condition", "subject": {"reference": pid},
        "code": {"coding": [{"system": ICD10CM, "code": diagnosis}]}})
    encounter = await create(http, {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": pid}, "serviceProvider": {"reference": "Organization/clinic"},
        "period": {"start": datetime.now(UTC).date().isoformat()},
        "diagnosis": [{"condition": {"reference": f"Condition/{condition['id']}"}}],
        "location": [{"location": {"reference": world["location"]}}]})
    r = await post(http, "Invoice/$generate-bill", {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": pid}},
        {"name": "encounter", "valueReference": {"reference": f"Encounter/{encounter['id']}"}},
        *({"name": "service", "part": [{"name": "code", "valueCoding": {"system": CPT,
                                                                       "code": code}}]}
          for code in PRICES)]})
    assert r.status_code == 200, r.text
    out = by_type(r.json())
    out["Condition"] = [condition]
    return out


X12 = {"Content-Type": "application/edi-x12"}


def claim_lines(claim: dict[str, Any], *, copay: Decimal = Decimal(30), sign: int = 1,
                deny_last: bool = False) -> list[Line]:
    """The claim's lines as an 835 pays them: in full but ``copay`` on the first; with
    ``deny_last`` the last one denied (CO-197, remark N54); ``sign`` -1: all reversed."""
    items = sorted(claim["item"], key=lambda i: i["sequence"])
    out = []
    for n, item in enumerate(items):
        charge = Decimal(str(item["net"]["value"]))
        part = copay if n == 0 else Decimal(0)
        denied = deny_last and n == len(items) - 1
        out.append(Line(item["productOrService"]["coding"][0]["code"], sign * charge,
                        Decimal(0) if denied else sign * (charge - part), str(item["sequence"]),
                        sign * part, denied=("CO", "197") if denied else None,
                        remarks=("N54",) if denied else ()))
    return out


def remittance(paid: list[Paid], trace: str, control: int) -> bytes:
    """An 835 of the tests' payer paying ``paid`` today."""
    return remittance_835_claims(claims=paid, payer_id=PAYER_ID, payer_tax=PAYER_TIN,
                                 payee_npi=CLINIC_NPI, trace=trace, member="M100",
                                 on=datetime.now(UTC).date(), control=control).encode()


def remit_for(claim: dict[str, Any], *, trace: str, copay: Decimal = Decimal(30),
              claim_id: str | None = None) -> str:
    return remittance_835(claim_id=claim_id or claim["id"],
                          lines=claim_lines(claim, copay=copay), payer_id=PAYER_ID,
                          payer_tax=PAYER_TIN, payee_npi=CLINIC_NPI, trace=trace,
                          member="M100", on=datetime.now(UTC).date(), control=700)


async def submitted(client: httpx.AsyncClient, clearinghouse: str) -> dict[str, Any]:
    world = await setup_clinic(client, clearinghouse)
    member = await patient_with_coverage(client, world, member="M100")
    billed = await bill(client, world, member["patient"])
    r = await post(client, "Claim/$submit", billed["Claim"][0])
    assert r.status_code == 200, r.text
    return {"claim": billed["Claim"][0], "invoice": billed["Invoice"][0], "world": world}
