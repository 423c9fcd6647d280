"""SMART scopes, roles, compartments and audit on the revenue-cycle operations."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import ClientFor
from tests.factories import patient
from tests.workflow.helpers import (
    PRICES,
    bill_parameters,
    charge_item_definition,
    coverage,
    create,
    payer_org,
    post,
    service,
)

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
