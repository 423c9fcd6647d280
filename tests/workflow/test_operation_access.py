"""SMART scopes, roles, compartments and audit on the revenue-cycle operations."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.factories import (
    PRICES,
    bill_parameters,
    charge_item_definition,
    coverage,
    patient,
    payer_org,
    service,
)
from tests.support.store import ClientFor
from tests.workflow.helpers import create, post

ELIGIBILITY = {"resourceType": "Parameters"}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic"}


@pytest.fixture
async def two_patients(client: httpx.AsyncClient) -> dict[str, Any]:
    for code in PRICES:
        await create(client, charge_item_definition(code))
    await client.put("Organization/clinic",
                     json={"resourceType": "Organization", "id": "clinic", "name": "Clinic"})
    payer = await create(client, payer_org("Acme", "ACME"))
    out: dict[str, Any] = {}
    for name in ("a", "b"):
        pat = await create(client, patient(family=name.upper()))
        cov = await create(client, coverage(patient=f"Patient/{pat['id']}",
                                            payer=f"Organization/{payer['id']}",
                                            member_id=f"M-{name}"))
        out[name] = {"patient": pat["id"], "coverage": cov["id"]}
    return out


def bill_for(patient_id: str) -> dict[str, Any]:
    return bill_parameters(f"Patient/{patient_id}", [service("OPD001")])


async def test_operations_need_a_token(client_for: ClientFor,
                                       two_patients: dict[str, Any]) -> None:
    anonymous = await client_for(None)
    a = two_patients["a"]
    for url, body in ((f"Coverage/{a['coverage']}/$eligibility", ELIGIBILITY),
                      ("Invoice/$generate-bill", bill_for(a["patient"])),
                      ("Claim/$submit", {"resourceType": "Claim"}),
                      ("CoverageEligibilityRequest/$submit", {"resourceType": "X"})):
        r = await post(anonymous, url, body)
        assert r.status_code == 401, url
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_roles_bound_the_operations(client_for: ClientFor,
                                          two_patients: dict[str, Any]) -> None:
    a = two_patients["a"]
    front_desk = await client_for("user/*.cruds", username="fd", role="front-desk")
    billing = await client_for("user/*.cruds", username="bill", role="billing")
    clinician = await client_for("user/*.cruds", username="doc", role="clinician")
    r = await post(front_desk, f"Coverage/{a['coverage']}/$eligibility", ELIGIBILITY)
    assert r.status_code == 200, r.text
    r = await post(front_desk, "Invoice/$generate-bill", bill_for(a["patient"]))
    assert r.status_code == 403
    r = await post(clinician, f"Coverage/{a['coverage']}/$eligibility", ELIGIBILITY)
    assert r.status_code == 403
    r = await post(billing, "Invoice/$generate-bill", bill_for(a["patient"]))
    assert r.status_code == 200, r.text
    claim = next(e["resource"] for e in r.json()["entry"]
                 if e["resource"]["resourceType"] == "Claim")
    assert (await post(front_desk, "Claim/$submit", claim)).status_code == 403
    assert (await post(billing, "Claim/$submit", claim)).status_code == 200


async def test_a_patient_token_stays_in_its_compartment(client: httpx.AsyncClient,
                                                        client_for: ClientFor,
                                                        two_patients: dict[str, Any]) -> None:
    a, b = two_patients["a"], two_patients["b"]
    app = await client_for("patient/*.cruds", patient=a["patient"])
    assert (await post(app, f"Coverage/{a['coverage']}/$eligibility",
                       ELIGIBILITY)).status_code == 200
    assert (await post(app, f"Coverage/{b['coverage']}/$eligibility",
                       ELIGIBILITY)).status_code == 404
    assert (await post(app, "Invoice/$generate-bill", bill_for(b["patient"]))).status_code == 404
    bill = await post(client, "Invoice/$generate-bill", bill_for(b["patient"]))
    claim_b = next(e["resource"] for e in bill.json()["entry"]
                   if e["resource"]["resourceType"] == "Claim")
    assert (await post(app, "Claim/$submit", claim_b)).status_code == 403
    # Nothing of B's was answered for A.
    r = await client.get("ClaimResponse", params={"request": f"Claim/{claim_b['id']}"})
    assert r.json()["total"] == 0


async def test_operations_are_audited(client: httpx.AsyncClient, client_for: ClientFor,
                                      two_patients: dict[str, Any]) -> None:
    a = two_patients["a"]
    front_desk = await client_for("user/*.cruds", username="fd", role="front-desk")
    assert (await post(front_desk, f"Coverage/{a['coverage']}/$eligibility",
                       ELIGIBILITY)).status_code == 200
    auditor = await client_for("system/AuditEvent.rs")
    found: list[dict[str, Any]] = []
    for _ in range(50):
        r = await auditor.get("AuditEvent", params={"agent-name": "fd"})
        found = [e["resource"] for e in r.json().get("entry", [])
                 if any(s.get("code") == "$eligibility" for s in e["resource"].get("subtype", []))]
        if found:
            break
        await asyncio.sleep(0.1)
    assert found, "no AuditEvent for the operation"
    assert found[0]["outcome"] == "0"


def claim_of(bill: httpx.Response) -> dict[str, Any]:
    return next(e["resource"] for e in bill.json()["entry"]
                if e["resource"]["resourceType"] == "Claim")


async def test_a_patient_token_learns_nothing_of_other_members(
        client: httpx.AsyncClient, client_for: ClientFor, two_patients: dict[str, Any]) -> None:
    a, b = two_patients["a"], two_patients["b"]
    app = await client_for("patient/*.cruds", patient=a["patient"])
    payer = (await client.get(f"Coverage/{a['coverage']}")).json()["payor"][0]
    request: dict[str, Any] = {
        "resourceType": "CoverageEligibilityRequest", "status": "active", "purpose": ["benefits"],
        "patient": {"reference": f"Patient/{a['patient']}"}, "created": "2026-11-01",
        "insurer": payer, "insurance": [{"coverage": {"reference": f"Coverage/{b['coverage']}"}}]}
    assert (await post(app, "CoverageEligibilityRequest/$submit", request)).status_code == 404
    # B's member id in a contained Coverage: answered as an unknown member.
    request["contained"] = [{"resourceType": "Coverage", "id": "c1", "status": "active",
                             "subscriberId": "M-b",
                             "beneficiary": {"reference": f"Patient/{a['patient']}"},
                             "payor": [payer]}]
    request["insurance"] = [{"coverage": {"reference": "#c1"}}]
    r = await post(app, "CoverageEligibilityRequest/$submit", request)
    assert r.status_code == 200, r.text
    assert r.json()["insurance"][0]["inforce"] is False
    assert r.json()["error"][0]["code"]["coding"][0]["code"] == "member-not-found"
    assert b["coverage"] not in r.text and b["patient"] not in r.text
    # Another patient's Coverage named for one's own patient: refused for anyone.
    request["insurance"] = [{"coverage": {"reference": f"Coverage/{b['coverage']}"}}]
    del request["contained"]
    assert (await post(client, "CoverageEligibilityRequest/$submit", request)).status_code == 422


async def test_claims_of_others_cannot_be_resubmitted_or_changed(
        client: httpx.AsyncClient, client_for: ClientFor, two_patients: dict[str, Any]) -> None:
    a, b = two_patients["a"], two_patients["b"]
    claim_b = claim_of(await post(client, "Invoice/$generate-bill", bill_for(b["patient"])))
    app = await client_for("patient/*.cruds", patient=a["patient"])
    hijack = {**claim_b, "patient": {"reference": f"Patient/{a['patient']}"}}
    assert (await post(app, "Claim/$submit", hijack)).status_code == 404
    create_only = await client_for("user/Claim.c", username="sub", role="billing")
    changed = {**claim_b, "status": "cancelled"}
    assert (await post(create_only, "Claim/$submit", changed)).status_code == 403
    stored = (await client.get(f"Claim/{claim_b['id']}")).json()
    assert stored["meta"]["versionId"] == "1"
    assert stored["patient"] == {"reference": f"Patient/{b['patient']}"}


async def test_scheduling_roles_can_book_and_cancel(client: httpx.AsyncClient,
                                                    client_for: ClientFor,
                                                    two_patients: dict[str, Any]) -> None:
    a, b = two_patients["a"], two_patients["b"]
    doc = await create(client, {"resourceType": "Practitioner", "name": [{"family": "D"}]})

    def booking(patient_id: str) -> dict[str, Any]:
        return {"resourceType": "Appointment", "status": "booked",
                "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:30:00Z",
                "participant": [{"actor": {"reference": f"Patient/{patient_id}"},
                                 "status": "accepted"},
                                {"actor": {"reference": f"Practitioner/{doc['id']}"},
                                 "status": "accepted"}]}

    front_desk = await client_for("user/*.cruds", username="fd", role="front-desk")
    r = await post(front_desk, "Appointment", booking(b["patient"]))
    assert r.status_code == 201, r.text
    appt = r.json()
    key = {"identifier": f"urn:fhir-rcm-server:bill|Appointment/{appt['id']}"}
    [draft] = [e["resource"] for e in (await client.get("Invoice", params=key)).json()["entry"]]
    assert draft["status"] == "draft"
    # A patient app cannot book the practitioner over another patient's booking.
    app = await client_for("patient/*.cruds", patient=a["patient"])
    assert (await post(app, "Appointment", booking(a["patient"]))).status_code == 409
    r = await front_desk.put(f"Appointment/{appt['id']}", json={**appt, "status": "cancelled"})
    assert r.status_code == 200
    [draft] = [e["resource"] for e in (await client.get("Invoice", params=key)).json()["entry"]]
    assert draft["status"] == "cancelled"


async def test_a_shared_appointment_bills_each_patient_separately(
        client: httpx.AsyncClient, client_for: ClientFor, two_patients: dict[str, Any]) -> None:
    a, b = two_patients["a"], two_patients["b"]
    appt = await create(client, {
        "resourceType": "Appointment", "status": "fulfilled", "participant": [
            {"actor": {"reference": f"Patient/{b['patient']}"}, "status": "accepted"},
            {"actor": {"reference": f"Patient/{a['patient']}"}, "status": "accepted"}]})
    ref = f"Appointment/{appt['id']}"
    bill_b = await post(client, "Invoice/$generate-bill",
                        bill_parameters(f"Patient/{b['patient']}", [service("OPD001")],
                                        appointment=ref))
    app = await client_for("patient/*.cruds", patient=a["patient"])
    bill_a = await post(app, "Invoice/$generate-bill",
                        bill_parameters(f"Patient/{a['patient']}", [service("LAB025")],
                                        appointment=ref))
    assert bill_a.status_code == 200, bill_a.text
    ids_b = {e["resource"]["id"] for e in bill_b.json()["entry"]}
    assert not ids_b & {e["resource"]["id"] for e in bill_a.json()["entry"]}
    assert all(e["resource"].get("subject", e["resource"].get("patient")) ==
               {"reference": f"Patient/{a['patient']}"} for e in bill_a.json()["entry"])


async def test_other_patients_encounters_look_like_unknown_ones(
        client: httpx.AsyncClient, client_for: ClientFor, two_patients: dict[str, Any]) -> None:
    a, b = two_patients["a"], two_patients["b"]
    enc_b = await create(client, {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{b['patient']}"}})
    app = await client_for("patient/*.cruds", patient=a["patient"])
    answers = []
    for enc in (f"Encounter/{enc_b['id']}", "Encounter/nope"):
        r = await post(app, "Invoice/$generate-bill", bill_parameters(
            f"Patient/{a['patient']}", [service("OPD001")], encounter=enc))
        answers.append((r.status_code, r.json()["issue"][0]["diagnostics"].replace(enc, "X")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 422


async def test_an_inflated_claim_does_not_settle_the_bill(
        client: httpx.AsyncClient, two_patients: dict[str, Any]) -> None:
    a = two_patients["a"]
    bill = await post(client, "Invoice/$generate-bill", bill_for(a["patient"]))
    claim = claim_of(bill)
    invoice = next(e["resource"] for e in bill.json()["entry"]
                   if e["resource"]["resourceType"] == "Invoice")
    inflated = {k: v for k, v in claim.items() if k not in ("id", "meta")}
    inflated["item"] = [{**claim["item"][0], "net": {"value": 100000, "currency": "USD"}}]
    inflated["item"][0].pop("unitPrice", None)
    assert (await post(client, "Claim/$submit", inflated)).status_code == 200
    after = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert after["meta"]["versionId"] == invoice["meta"]["versionId"]


async def test_an_operation_on_a_patient_is_audited_under_that_patient(
        client: httpx.AsyncClient, client_for: ClientFor, two_patients: dict[str, Any]) -> None:
    b = two_patients["b"]
    billing = await client_for("user/*.cruds", username="bill", role="billing")
    assert (await post(billing, "Invoice/$generate-bill",
                       bill_for(b["patient"]))).status_code == 200
    auditor = await client_for("system/AuditEvent.rs")
    for _ in range(50):
        r = await auditor.get("AuditEvent", params={"patient": f"Patient/{b['patient']}",
                                                    "agent-name": "bill"})
        if r.json().get("total", 0) >= 1:
            break
        await asyncio.sleep(0.1)
    assert r.json()["total"] >= 1
