"""Which Coverage a bill claims, and what the Claim lists (coordination of benefits, issue
29 part 1): a Coverage whose latest eligibility answer (a 271 here, from the loopback
clearinghouse) says member not found is left out, every time, and the Claim says why; two
Coverages with orders 1 and 2 are both listed, the first focal, and only it travels to
the payer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.workflow.helpers import create, post

# The app of the X12 payer tests.
from tests.x12.test_x12_payer import configure, received, settings_overrides  # noqa: F401
from tests.x12.world import PLAN, patient_with_coverage, setup_clinic
from tests.x12.world import bill as make_bill

CHOICE = "https://fhir-rcm-server.org/StructureDefinition/claim-coverage-choice"
PATIENTS = 20  # the stale Coverage used to win about half the time, by its random id

pytestmark = pytest.mark.process


async def second_coverage(client: httpx.AsyncClient, first: dict[str, Any], member: str,
                          **more: Any) -> dict[str, Any]:
    """Another Coverage of the same patient with the same payer and period."""
    body = {k: v for k, v in first.items() if k not in ("id", "meta")}
    return await create(client, {**body, "subscriberId": member, **more})


def choice(claim: dict[str, Any]) -> str:
    return str(next(e["valueString"] for e in claim["extension"] if e["url"] == CHOICE))


async def test_a_coverage_whose_271_says_member_not_found_is_left_out_every_time(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    world = await setup_clinic(client, clearinghouse)
    await configure(clearinghouse, members={"M100": PLAN})
    for n in range(PATIENTS):
        valid = await patient_with_coverage(client, world, member="M100", family=f"Two{n}")
        stale = await second_coverage(client, valid["coverage"], "M999")
        for coverage in (valid["coverage"], stale):
            r = await post(client, f"Coverage/{coverage['id']}/$eligibility",
                           {"resourceType": "Parameters"})
            assert r.status_code == 200, r.text
        billed = await make_bill(client, world, valid["patient"])
        [claim] = billed["Claim"]
        assert claim["insurance"] == [{"sequence": 1, "focal": True, "coverage": {
            "reference": f"Coverage/{valid['coverage']['id']}"}}]
        why = choice(claim)
        assert f"Coverage/{stale['id']}" in why and "member not found" in why, why


async def test_without_an_eligibility_answer_two_coverages_without_order_are_not_guessed(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    world = await setup_clinic(client, clearinghouse)
    valid = await patient_with_coverage(client, world, member="M100")
    stale = await second_coverage(client, valid["coverage"], "M999")
    r = await post(client, "Invoice/$generate-bill", {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{valid['patient']['id']}"}},
        {"name": "service", "part": [{"name": "code", "valueCoding": {
            "system": "http://www.ama-assn.org/go/cpt", "code": "99213"}}]}]})
    assert r.status_code == 422, r.text
    diagnostics = r.json()["issue"][0]["diagnostics"]
    assert f"Coverage/{stale['id']}" in diagnostics and "no order" in diagnostics


async def test_two_ordered_coverages_are_listed_and_the_primary_alone_is_sent(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    world = await setup_clinic(client, clearinghouse)
    await configure(clearinghouse, members={"M100": PLAN})
    member = await patient_with_coverage(client, world, member="M100")
    primary = {**member["coverage"], "order": 1}
    r = await client.put(f"Coverage/{primary['id']}", json=primary)
    assert r.status_code == 200, r.text
    secondary = await second_coverage(client, primary, "M200", order=2)
    billed = await make_bill(client, world, member["patient"])
    [claim] = billed["Claim"]
    assert claim["insurance"] == [
        {"sequence": 1, "focal": True, "coverage": {"reference": f"Coverage/{primary['id']}"}},
        {"sequence": 2, "focal": False,
         "coverage": {"reference": f"Coverage/{secondary['id']}"}}]
    why = choice(claim)
    assert why.index(f"Coverage/{primary['id']}") < why.index(f"Coverage/{secondary['id']}")
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text
    sent = [m for m in await received(clearinghouse) if m["kind"] == "837"][-1]
    assert sent["valid"], sent.get("ack")
    assert "M100" in sent["text"] and "M200" not in sent["text"]


async def test_a_prior_authorization_in_force_is_on_the_claim_and_its_837p(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    """A complete prior authorization answer (ClaimResponse, use preauthorization) about the
    Coverage, valid on the visit's day, puts its number on the Claim's insurance
    (preAuthRef) and in the 837P (REF*G1); one whose period has ended does not."""
    world = await setup_clinic(client, clearinghouse)
    await configure(clearinghouse, members={"M100": PLAN})
    member = await patient_with_coverage(client, world, member="M100")
    coverage_ref = {"reference": f"Coverage/{member['coverage']['id']}"}
    year = datetime.now(UTC).year
    for number, start, end in (("AUTH-1", f"{year}-01-01", f"{year}-12-31"),
                               ("AUTH-OLD", f"{year - 1}-01-01", f"{year - 1}-12-31")):
        await create(client, {
            "resourceType": "ClaimResponse", "status": "active", "use": "preauthorization",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                                 "code": "professional"}]},
            "patient": {"reference": f"Patient/{member['patient']['id']}"},
            "created": f"{start}T00:00:00Z", "insurer": {"reference": world["payer"]},
            "outcome": "complete", "preAuthRef": number,
            "preAuthPeriod": {"start": start, "end": end},
            "insurance": [{"sequence": 1, "focal": True, "coverage": coverage_ref}]})
    billed = await make_bill(client, world, member["patient"])
    [claim] = billed["Claim"]
    assert claim["insurance"][0]["preAuthRef"] == ["AUTH-1"]
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text
    sent = [m for m in await received(clearinghouse) if m["kind"] == "837"][-1]
    assert sent["valid"], sent.get("ack")
    assert "REF*G1*AUTH-1~" in sent["text"] and "AUTH-OLD" not in sent["text"]
