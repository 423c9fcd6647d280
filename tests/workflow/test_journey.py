"""The revenue-cycle day over HTTP only, with two server processes on loopback:
one is the clinic, the other the payer the clinic's payer Organization points at."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import factories
from tests.factories import (
    PRICES,
    bill_parameters,
    charge_item_definition,
    coverage,
    patient,
    payer_org,
    service,
)
from tests.support.server_process import (
    ServerProcess,
    client_key_files,
    payer_process,
    server_process,
    stop_process,
)
from tests.support.store import HTTP_TIMEOUT, Store, StoreFactory, mint_for_database
from tests.workflow.helpers import adjudication, by_type, create, post, share

YEAR = datetime.now(UTC).year
COPAY = Decimal(30)
# The clinic's payer timeouts: long enough for a busy 2-core machine's payer to answer, short
# enough to test a payer that stops answering.
READ_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0


@pytest.fixture
async def databases(new_store: StoreFactory) -> AsyncIterator[tuple[Store, Store]]:
    """The clinic's store and the payer's."""
    stores = (new_store(), new_store())
    yield stores
    for store in stores:
        await store.drop()


CLINIC_CLIENT = "clinic-server"
PAYER_SCOPE = "system/CoverageEligibilityRequest.c system/Claim.c"


@pytest.fixture
def clinic_key(tmp_path: Path) -> tuple[Path, Path]:
    return client_key_files(tmp_path)


@pytest.fixture
def payer(databases: tuple[Store, Store],
          clinic_key: tuple[Path, Path]) -> Iterator[ServerProcess]:
    """The payer, with SMART on: the clinic is registered as a backend client."""
    with payer_process(databases[1], client_id=CLINIC_CLIENT, jwks_file=clinic_key[1],
                       scope=PAYER_SCOPE) as server:
        yield server


@pytest.fixture
def clinic(databases: tuple[Store, Store],
           clinic_key: tuple[Path, Path]) -> Iterator[ServerProcess]:
    with server_process(databases[0], FHIR_BILLING_PROVIDER="Organization/clinic",
                        FHIR_CLIENT_KEY_FILE=str(clinic_key[0]),
                        FHIR_PAYER_READ_TIMEOUT=str(READ_TIMEOUT),
                        FHIR_PAYER_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
                        FHIR_PAYER_RETRIES="1", FHIR_PAYER_BREAKER_FAILURES="3",
                        FHIR_PAYER_BREAKER_RESET="60") as server:
        yield server


async def admin(store: Store, server: ServerProcess) -> dict[str, str]:
    token = await mint_for_database(store, server.base)
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}


async def setup_payer(payer: httpx.AsyncClient) -> dict[str, Any]:
    """The payer's own records: itself, two members (one current, one expired)."""
    org = await create(payer, payer_org("Acme Health", "ACME"))
    members = {}
    for member_id, start, end in (("M-100", f"{YEAR}-01-01", f"{YEAR}-12-31"),
                                  ("M-200", f"{YEAR - 2}-01-01", f"{YEAR - 1}-12-31")):
        person = await create(payer, patient(family=f"Member{member_id}"))
        members[member_id] = await create(payer, coverage(
            patient=f"Patient/{person['id']}", payer=f"Organization/{org['id']}",
            member_id=member_id, start=start, end=end, copay=COPAY))
    return {"org": org, "members": members}


async def setup_clinic(clinic: httpx.AsyncClient, payer_base: str) -> dict[str, Any]:
    r = await clinic.put("Organization/clinic", json={"resourceType": "Organization",
                                                     "id": "clinic", "name": "Clinic"})
    assert r.status_code == 201
    endpoint = await create(clinic, {
        "resourceType": "Endpoint", "status": "active", "address": payer_base,
        "extension": [{"url": "https://fhir-rcm-server.org/StructureDefinition/endpoint-oauth2",
                       "extension": [{"url": "clientId", "valueString": CLINIC_CLIENT},
                                     {"url": "scope", "valueString": PAYER_SCOPE}]}],
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "hl7-fhir-rest"},
        "payloadType": [{"text": "FHIR R4"}]})
    org = await create(clinic, payer_org("Acme Health", "ACME",
                                         endpoint=f"Endpoint/{endpoint['id']}"))
    for code in PRICES:
        await create(clinic, charge_item_definition(code))
    doc = await create(clinic, {"resourceType": "Practitioner", "name": [{"family": "Doc"}]})
    room = await create(clinic, {"resourceType": "Location", "name": "Room 1"})
    return {"payer": f"Organization/{org['id']}", "doc": f"Practitioner/{doc['id']}",
            "room": f"Location/{room['id']}"}


async def register(clinic: httpx.AsyncClient, payer_ref: str, member_id: str,
                   family: str) -> tuple[str, dict[str, Any]]:
    person = await create(clinic, patient(family=family))
    cov = await create(clinic, coverage(patient=f"Patient/{person['id']}", payer=payer_ref,
                                        member_id=member_id))
    return f"Patient/{person['id']}", cov


async def eligibility(clinic: httpx.AsyncClient, coverage_id: str) -> httpx.Response:
    return await post(clinic, f"Coverage/{coverage_id}/$eligibility", {
        "resourceType": "Parameters", "parameter": [{"name": "serviced",
                                                     "valueDate": f"{YEAR}-06-01"}]})


def slot(minutes: int) -> str:
    start = datetime(YEAR, 6, 1, 9, tzinfo=UTC) + timedelta(minutes=minutes)
    return start.isoformat().replace("+00:00", "Z")


def appointment(patient_ref: str, actors: list[str], start: int, end: int) -> dict[str, Any]:
    return factories.appointment(patient_ref, actors, slot(start), slot(end))


@pytest.mark.slow
@pytest.mark.process
async def test_the_revenue_cycle_day(clinic: ServerProcess, payer: ServerProcess,
                                     databases: tuple[Store, Store]) -> None:
    clinic_headers = await admin(databases[0], clinic)
    payer_headers = await admin(databases[1], payer)
    async with (httpx.AsyncClient(base_url=clinic.base + "/", timeout=HTTP_TIMEOUT,
                                  headers=clinic_headers) as c,
                httpx.AsyncClient(base_url=payer.base + "/", timeout=HTTP_TIMEOUT,
                                  headers=payer_headers) as p):
        # The payer wants a token; the clinic's adapter gets one (private_key_jwt).
        anonymous = await post(p, "Claim/$submit", {"resourceType": "Claim"},
                               headers={"Authorization": ""})
        assert anonymous.status_code == 401
        payer_data = await setup_payer(p)
        ids = await setup_clinic(c, payer.base)

        # Register the patients and their coverage (a member, an expired one, an unknown one).
        pat, cov = await register(c, ids["payer"], "M-100", "Current")
        _, expired = await register(c, ids["payer"], "M-200", "Expired")
        _, unknown = await register(c, ids["payer"], "M-999", "Unknown")

        # Eligibility, answered by the payer process.
        r = await eligibility(c, cov["id"])
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["insurance"][0]["inforce"] is True
        assert answer["insurance"][0]["coverage"] == {"reference": f"Coverage/{cov['id']}"}
        assert answer["patient"] == {"reference": pat}
        [benefit] = answer["insurance"][0]["item"][0]["benefit"]
        assert Decimal(str(benefit["allowedMoney"]["value"])) == COPAY
        assert answer["identifier"][0]["system"] == payer.base
        at_payer = await p.get(f"CoverageEligibilityResponse/{answer['identifier'][0]['value']}")
        assert at_payer.status_code == 200
        member = payer_data["members"]["M-100"]
        assert at_payer.json()["insurance"][0]["coverage"] == {
            "reference": f"Coverage/{member['id']}"}
        # A request naming its insurer only as a contained Organization still goes to the
        # payer of its Coverage.
        r = await post(c, "CoverageEligibilityRequest/$submit", {
            "resourceType": "CoverageEligibilityRequest", "status": "active",
            "purpose": ["validation"], "patient": {"reference": pat},
            "created": f"{YEAR}-06-01", "insurer": {"reference": "#o"},
            "contained": [{"resourceType": "Organization", "id": "o", "name": "Acme"}],
            "insurance": [{"coverage": {"reference": f"Coverage/{cov['id']}"}}]})
        assert r.status_code == 200, r.text
        assert r.json()["identifier"][0]["system"] == payer.base
        assert r.json()["insurance"][0]["inforce"] is True
        r = await eligibility(c, expired["id"])
        assert r.json()["insurance"][0]["inforce"] is False
        assert "error" not in r.json()
        r = await eligibility(c, unknown["id"])
        assert r.status_code == 200
        assert r.json()["outcome"] == "complete"
        assert r.json()["insurance"][0]["inforce"] is False
        assert r.json()["error"][0]["code"]["coding"][0]["code"] == "member-not-found"

        # Book; a double booking is refused, also when several race for one slot.
        visit = await create(c, appointment(pat, [ids["doc"], ids["room"]], 0, 30))
        r = await post(c, "Appointment", appointment(pat, [ids["doc"]], 10, 40))
        assert r.status_code == 409
        assert f"Appointment/{visit['id']}" in r.json()["issue"][0]["diagnostics"]
        racing = await asyncio.gather(*(
            post(c, "Appointment", appointment(pat, [ids["doc"]], 60 + i, 90 + i))
            for i in range(6)))
        assert sorted(r.status_code for r in racing) == [201] + [409] * 5

        # Cancel the raced one: its draft Invoice is cancelled.
        [won] = [r.json() for r in racing if r.status_code == 201]
        draft_key = {"identifier": f"urn:fhir-rcm-server:bill|Appointment/{won['id']}"}
        [draft] = [e["resource"] for e in (await c.get("Invoice", params=draft_key)).json()["entry"]]
        assert draft["status"] == "draft"
        r = await c.put(f"Appointment/{won['id']}", json={**won, "status": "cancelled"})
        assert r.status_code == 200
        [draft] = [e["resource"] for e in (await c.get("Invoice", params=draft_key)).json()["entry"]]
        assert draft["status"] == "cancelled"

        # The visit happens; the bill is generated once, priced from the price list.
        encounter = await create(c, {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "AMB"},
            "subject": {"reference": pat},
            "appointment": [{"reference": f"Appointment/{visit['id']}"}],
            "period": {"start": slot(0), "end": slot(30)}})
        r = await post(c, "Invoice/$generate-bill", bill_parameters(
            pat, [service("OPD001"), service("LAB025")], encounter=f"Encounter/{encounter['id']}"))
        assert r.status_code == 200, r.text
        bill = by_type(r.json())
        total = sum(price for _, price in PRICES.values())
        [invoice] = bill["Invoice"]
        assert Decimal(str(invoice["totalGross"]["value"])) == total == 650
        [claim] = bill["Claim"]

        # The claim goes to the payer; the answer updates what the patient owes.
        r = await post(c, "Claim/$submit", claim)
        assert r.status_code == 200, r.text
        response = r.json()
        assert response["outcome"] == "complete"
        assert response["request"] == {"reference": f"Claim/{claim['id']}"}
        assert Decimal(str(response["payment"]["amount"]["value"])) == total - COPAY
        first = next(i for i in response["item"] if i["itemSequence"] == 1)
        assert adjudication(first, "copay") == COPAY
        stored = await c.get(f"ClaimResponse/{response['id']}")
        assert stored.status_code == 200
        invoice = (await c.get(f"Invoice/{invoice['id']}")).json()
        assert share(invoice, "insurer") == total - COPAY
        assert share(invoice, "patient") == COPAY
        assert invoice["status"] == "issued"
        # The payer kept the claim and its own answer.
        remote_id = next(i["value"] for i in response["identifier"] if i["system"] == payer.base)
        at_payer = (await p.get(f"ClaimResponse/{remote_id}")).json()
        assert at_payer["insurance"][0]["coverage"] == {"reference": f"Coverage/{member['id']}"}
        payer_claim = (await p.get(at_payer["request"]["reference"])).json()
        assert payer_claim["identifier"] == claim["identifier"]

        # The payer's audit trail shows the clinic's backend client calling it.
        auditor = await mint_for_database(databases[1], payer.base,
                                          "system/AuditEvent.rs")
        deadline = time.monotonic() + HTTP_TIMEOUT  # the payer writes its audit in batches
        while time.monotonic() < deadline:
            audit = (await p.get("AuditEvent", params={"agent-name": CLINIC_CLIENT},
                                 headers={"Authorization": f"Bearer {auditor}"})).json()
            if audit.get("total", 0) >= 2:
                break
            await asyncio.sleep(0.1)
        assert audit["total"] >= 2

        # The payer stops answering (paused): a clean 504 within the timeout.
        os.kill(payer.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            r = await eligibility(c, cov["id"])
            elapsed = time.monotonic() - started
        finally:
            os.kill(payer.proc.pid, signal.SIGCONT)
        assert r.status_code == 504, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
        assert elapsed < CONNECT_TIMEOUT + READ_TIMEOUT + 5

        # The payer is gone: a clean 502, then the circuit opens and calls fail at once, told
        # as the first failure was (which failure it was is the log's and the metrics').
        stop_process(payer.proc)
        r = await eligibility(c, cov["id"])
        assert r.status_code == 502, r.text
        assert r.json()["issue"][0]["code"] == "transient"
        first = r.json()
        r = await eligibility(c, cov["id"])
        assert r.status_code == 502
        started = time.monotonic()
        r = await eligibility(c, cov["id"])
        assert r.status_code == 502
        assert r.json() == first
        assert time.monotonic() - started < CONNECT_TIMEOUT
        metrics = await c.get(f"{clinic.base.removesuffix('/fhir')}/metrics")
        assert re.search(r'^fhir_adapter_calls_total\{[^}]*outcome="circuit_open"[^}]*\} '
                         r'[1-9]', metrics.text, re.M), metrics.text[:2000]
        # Nothing was half-written: the claim's one answer is still the only one.
        r = await c.get("ClaimResponse", params={"request": f"Claim/{claim['id']}"})
        assert r.json()["total"] == 1
