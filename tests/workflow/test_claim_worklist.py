"""The submit-claim step's worklist over REST, with the payer a real peer on loopback: a
claim sent while the payer is down waits as one failed submit-claim Task saying what to
fix (sent again, the same Task is updated), and ``$retry`` once the payer is up completes
it with the ClaimResponse; a payer that refuses the claim leaves a Task saying so."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.factories import (
    PRICES,
    bill_parameters,
    charge_item_definition,
    coverage,
    patient,
    payer_org,
    service,
)
from tests.support.loopback import serve_in_thread
from tests.support.server_process import free_port
from tests.workflow.helpers import (
    CLINIC,
    WORKLIST,
    by_type,
    create,
    found_eventually,
    post,
    requested,
)

SUBMIT_CLAIM = f"{WORKLIST}|submit-claim"
FAMILY = "Worklistpatient"  # health data that must not reach statusReason
YEAR = datetime.now(UTC).year


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # The circuit stays closed through the test's failures: each one is a call that fails.
    return {**CLINIC, "fhir_payer_retries": 1, "fhir_payer_connect_timeout": 2.0,
            "fhir_payer_read_timeout": 5.0, "fhir_payer_breaker_failures": 10}


@dataclass
class Payer:
    """The payer on loopback: what it was sent, and whether it refuses claims."""

    port: int = field(default_factory=free_port)
    claims: list[dict[str, Any]] = field(default_factory=list)
    refuse: bool = False

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def app(self) -> Starlette:
        async def submit(request: Request) -> JSONResponse:
            claim = await request.json()
            self.claims.append(claim)
            if self.refuse:
                return JSONResponse({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "business-rule", "diagnostics": "not ours",
                     "expression": ["Claim.insurance[0]"]}]}, status_code=422)
            # It pays the claim's total.
            return JSONResponse({
                "resourceType": "ClaimResponse", "id": f"r{len(self.claims)}",
                "status": "active", "type": claim["type"], "use": "claim",
                "patient": {"reference": "Patient/theirs"}, "created": f"{YEAR}-06-01",
                "insurer": {"reference": "Organization/theirs"}, "outcome": "complete",
                "payment": {"type": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/ex-paymenttype",
                    "code": "complete"}]}, "amount": claim["total"]}})

        return Starlette(routes=[Route("/fhir/Claim/$submit", submit, methods=["POST"])])

    def up(self) -> AbstractContextManager[str]:
        return serve_in_thread(self.app(), port=self.port)


@pytest.fixture
def payer() -> Payer:
    return Payer()


async def billed_claim(client: httpx.AsyncClient, payer: Payer) -> tuple[
        dict[str, Any], str, str]:
    """A bill whose Claim goes to ``payer``'s endpoint: (the Claim, the patient, the
    Endpoint)."""
    for code in PRICES:
        await create(client, charge_item_definition(code))
    r = await client.put("Organization/clinic",
                         json={"resourceType": "Organization", "id": "clinic", "name": "Clinic"})
    assert r.status_code in (200, 201), r.text
    endpoint = await create(client, {
        "resourceType": "Endpoint", "status": "active", "address": payer.address,
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "hl7-fhir-rest"}, "payloadType": [{"text": "FHIR R4"}]})
    org = await create(client, payer_org("Acme Health", "ACME",
                                         endpoint=f"Endpoint/{endpoint['id']}"))
    pat = await create(client, patient(family=FAMILY))
    await create(client, coverage(patient=f"Patient/{pat['id']}",
                                  payer=f"Organization/{org['id']}", member_id="M-1",
                                  start=f"{YEAR}-01-01", end=f"{YEAR}-12-31"))
    r = await post(client, "Invoice/$generate-bill", bill_parameters(
        f"Patient/{pat['id']}", [service(code) for code in PRICES]))
    assert r.status_code == 200, r.text
    [claim] = by_type(r.json())["Claim"]
    return claim, f"Patient/{pat['id']}", f"Endpoint/{endpoint['id']}"


async def open_tasks(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("Task", params={"code": SUBMIT_CLAIM, "status": "failed"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


async def test_a_claim_sent_while_the_payer_is_down_waits_and_is_retried(
        client: httpx.AsyncClient, payer: Payer) -> None:
    claim, patient_ref, endpoint = await billed_claim(client, payer)
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 502, r.text
    [task] = await open_tasks(client)
    assert any(f"Task/{task['id']}" in i["diagnostics"] for i in r.json()["issue"])
    assert task["focus"] == {"reference": f"Claim/{claim['id']}"}
    assert task["for"] == {"reference": patient_ref}
    reason = task["statusReason"]["text"]
    assert endpoint in reason and "address" in reason and "unreachable" in reason
    assert FAMILY not in str(task)
    [outcome] = task["contained"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert task["output"] == [{"type": {"text": "OperationOutcome"},
                               "valueReference": {"reference": f"#{outcome['id']}"}}]

    # Sent again, by its id and then by its identifiers alone: the same Claim, the same Task.
    for body in (claim, {k: v for k, v in claim.items() if k not in ("id", "meta")}):
        r = await post(client, "Claim/$submit", body)
        assert r.status_code == 502, r.text
    [again] = await open_tasks(client)
    assert again["id"] == task["id"]
    assert int(again["meta"]["versionId"]) == int(task["meta"]["versionId"]) + 2
    assert again["authoredOn"] == task["authoredOn"]
    assert again["lastModified"] >= task["lastModified"]
    assert (await client.get("Task", params={"code": SUBMIT_CLAIM})).json()["total"] == 1
    assert (await client.get("Claim")).json()["total"] == 1
    assert payer.claims == []

    # The payer is up: the retry sends the claim once, and the Task is completed.
    with payer.up():
        r = await post(client, f"Task/{task['id']}/$retry", {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["id"] == task["id"] and done["status"] == "completed"
    assert "statusReason" not in done and "contained" not in done
    [sent] = payer.claims
    assert sent["identifier"] == claim["identifier"]
    [response] = await found_eventually(client, "ClaimResponse",
                                        {"request": f"Claim/{claim['id']}"})
    assert done["output"] == [{"type": {"text": "ClaimResponse"}, "valueReference": {
        "reference": f"ClaimResponse/{response['id']}"}}]
    expected = sum((price for _, price in PRICES.values()), Decimal(0))
    assert Decimal(str(response["payment"]["amount"]["value"])) == expected
    assert response["outcome"] == "complete"
    assert await open_tasks(client) == []
    # Submitted again now, the claim has its answer: nothing is sent, no Task opens.
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200 and r.json()["id"] == response["id"]
    assert len(payer.claims) == 1
    assert (await client.get("Task", params={"code": SUBMIT_CLAIM})).json()["total"] == 1


async def test_a_claim_the_payer_refuses_waits_with_the_payers_issues(
        client: httpx.AsyncClient, payer: Payer) -> None:
    claim, _, endpoint = await billed_claim(client, payer)
    payer.refuse = True
    with payer.up():
        r = await post(client, "Claim/$submit", claim)
        assert r.status_code == 502, r.text
        [task] = await open_tasks(client)
        assert len(payer.claims) == 1
        # Still refused: the retry answers the Task, failed as before.
        r = await post(client, f"Task/{task['id']}/$retry", {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed" and len(payer.claims) == 2
    reason = r.json()["statusReason"]["text"]
    assert endpoint in reason and "refused" in reason and "correct the Claim" in reason
    [outcome] = r.json()["contained"]
    codes = [i["code"] for i in outcome["issue"]]
    assert "business-rule" in codes  # the payer's issue code passed on, not its text
    assert "not ours" not in str(r.json())
    assert (await client.get("Task", params={"code": SUBMIT_CLAIM})).json()["total"] == 1


async def test_a_claim_task_set_to_requested_is_sent_again_by_the_worklist_worker(
        client: httpx.AsyncClient, payer: Payer) -> None:
    claim, _, endpoint = await billed_claim(client, payer)
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 502, r.text
    [task] = await open_tasks(client)
    # Requested while the payer is still down: the worker sends it, it fails again.
    again = await requested(client, task["id"])
    assert again["status"] == "failed" and payer.claims == []
    assert endpoint in again["statusReason"]["text"]
    assert "unreachable" in again["statusReason"]["text"]
    # The payer is up: requested, the worker (acting as the server) sends it once.
    with payer.up():
        done = await requested(client, task["id"])
    assert done["status"] == "completed" and "statusReason" not in done
    [sent] = payer.claims
    assert sent["identifier"] == claim["identifier"]
    [response] = await found_eventually(client, "ClaimResponse",
                                        {"request": f"Claim/{claim['id']}"})
    assert done["output"] == [{"type": {"text": "ClaimResponse"}, "valueReference": {
        "reference": f"ClaimResponse/{response['id']}"}}]
    assert (await client.get("Task", params={"code": SUBMIT_CLAIM})).json()["total"] == 1


OPENS_AT_ONCE = {**CLINIC, "fhir_payer_retries": 0, "fhir_payer_breaker_failures": 1,
                 "fhir_payer_breaker_reset": 60.0}


@pytest.mark.parametrize("settings_overrides", [OPENS_AT_ONCE])
async def test_an_open_circuit_keeps_the_claim_waiting(client: httpx.AsyncClient,
                                                       payer: Payer) -> None:
    claim, _, endpoint = await billed_claim(client, payer)
    r = await post(client, "Claim/$submit", claim)  # the failure that opens the circuit
    assert r.status_code == 502, r.text
    [task] = await open_tasks(client)
    with payer.up():  # up, but the circuit is open: no call is made
        r = await post(client, f"Task/{task['id']}/$retry", {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["id"] == task["id"] and again["status"] == "failed"
    assert endpoint in again["statusReason"]["text"]
    assert int(again["meta"]["versionId"]) == int(task["meta"]["versionId"]) + 1
    assert payer.claims == []
    assert (await client.get("ClaimResponse")).json()["total"] == 0
