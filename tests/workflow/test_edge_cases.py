"""Edge cases of the revenue-cycle operations (found by review): each must give the
FHIR-sensible answer, a 4xx OperationOutcome or an error outcome, never a 500, and must
leave nothing half-written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.factories import (
    PRICES,
    SERVICE_SYSTEM,
    bill_parameters,
    charge_item_definition,
    coverage,
    patient,
    payer_org,
    service,
)
from tests.workflow.helpers import by_type, create, post, share

YEAR = datetime.now(UTC).year
COPAY_TYPE = "http://terminology.hl7.org/CodeSystem/coverage-copay-type"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic"}


@pytest.fixture(autouse=True)
async def clinic(client: httpx.AsyncClient) -> None:
    for code in PRICES:
        await create(client, charge_item_definition(code))
    r = await client.put("Organization/clinic",
                         json={"resourceType": "Organization", "id": "clinic", "name": "Clinic"})
    assert r.status_code == 201


async def insured(client: httpx.AsyncClient, member: str = "M-1", **kw: Any
                  ) -> tuple[str, dict[str, Any], str]:
    pat = await create(client, patient(family=f"P{uuid.uuid4().hex[:6]}"))
    payer = await create(client, payer_org("Acme", f"ACME-{member}"))
    cov = await create(client, coverage(patient=f"Patient/{pat['id']}",
                                        payer=f"Organization/{payer['id']}", member_id=member,
                                        **kw))
    return f"Patient/{pat['id']}", cov, f"Organization/{payer['id']}"


async def bill(client: httpx.AsyncClient, pat: str, codes: tuple[str, ...] = ("OPD001",),
               **kw: Any) -> dict[str, list[dict[str, Any]]]:
    r = await post(client, "Invoice/$generate-bill",
                   bill_parameters(pat, [service(c) for c in codes], **kw))
    assert r.status_code == 200, r.text
    return by_type(r.json())


def claim_for(pat: str, coverage_ref: str, payer: str, net: Any, *,
              identifier: list[dict[str, str]] | None = None,
              serviced: str = f"{YEAR}-06-01") -> dict[str, Any]:
    return {
        "resourceType": "Claim", "status": "active",
        **({"identifier": identifier} if identifier else {}),
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                             "code": "professional"}]},
        "use": "claim", "patient": {"reference": pat}, "created": f"{YEAR}-06-01",
        "provider": {"reference": "Organization/clinic"}, "insurer": {"reference": payer},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": coverage_ref}}],
        "item": [{"sequence": 1, "productOrService": {"coding": [
            {"system": SERVICE_SYSTEM, "code": "OPD001"}]}, "servicedDate": serviced,
            "net": {"value": net, "currency": "USD"}}]}


async def count(client: httpx.AsyncClient, type_: str) -> int:
    total: int = (await client.get(type_, params={"_summary": "count"})).json()["total"]
    return total


async def test_reused_identifier_for_another_patient_is_adjudicated_anew(
        client: httpx.AsyncClient) -> None:
    pat1, cov1, payer1 = await insured(client, "M-1")
    pat2, cov2, payer2 = await insured(client, "M-2")
    shared = [{"system": "urn:fhir-rcm-server:bill", "value": "Encounter/E1"}]
    first = (await post(client, "Claim/$submit", claim_for(pat1, f"Coverage/{cov1['id']}", payer1,
                                                           500, identifier=shared))).json()
    second = (await post(client, "Claim/$submit", claim_for(pat2, f"Coverage/{cov2['id']}",
                                                            payer2, 300, identifier=shared))).json()
    assert second["id"] != first["id"]
    assert second["patient"] == {"reference": pat2}
    assert Decimal(str(second["payment"]["amount"]["value"])) == 300


async def test_a_non_coverage_as_coverage_is_an_unknown_member(client: httpx.AsyncClient) -> None:
    pat, _, payer = await insured(client)
    other = await create(client, {"resourceType": "Basic", "code": {"text": "x"}})
    r = await post(client, "Claim/$submit", claim_for(pat, f"Basic/{other['id']}", payer, 650))
    assert r.status_code == 200
    assert r.json()["outcome"] == "error"
    assert r.json()["error"][0]["code"]["coding"][0]["code"] == "member-not-found"


async def test_a_claim_cannot_settle_another_patients_invoice(client: httpx.AsyncClient) -> None:
    pat_a, cov_a, payer_a = await insured(client, "M-A")
    pat_b, _, _ = await insured(client, "M-B")
    [invoice_b] = (await bill(client, pat_b))["Invoice"]
    forged = claim_for(pat_a, f"Coverage/{cov_a['id']}", payer_a, 5000, identifier=[
        {"system": "urn:fhir-rcm-server:invoice", "value": f"Invoice/{invoice_b['id']}"}])
    assert (await post(client, "Claim/$submit", forged)).status_code == 200
    after = (await client.get(f"Invoice/{invoice_b['id']}")).json()
    assert after["meta"]["versionId"] == invoice_b["meta"]["versionId"]
    assert after["status"] == "issued"


@pytest.mark.parametrize("end, serviced, inforce", [
    (f"{YEAR}", f"{YEAR}-12-31", True), (f"{YEAR}-11", f"{YEAR}-11-30", True),
    (f"{YEAR}-11", f"{YEAR}-12-01", False), (f"{YEAR}-06-30T23:00:00+00:00", f"{YEAR}-06-30",
                                             True)])
async def test_partial_period_ends_cover_their_whole_span(client: httpx.AsyncClient, end: str,
                                                          serviced: str, inforce: bool) -> None:
    _, cov, _ = await insured(client, end=end)
    r = await post(client, f"Coverage/{cov['id']}/$eligibility", {
        "resourceType": "Parameters", "parameter": [{"name": "serviced", "valueDate": serviced}]})
    assert r.status_code == 200, r.text
    assert r.json()["insurance"][0]["inforce"] is inforce


async def test_deductible_counts_per_service_year(client: httpx.AsyncClient) -> None:
    deductible = Decimal(100)
    pat, cov, payer = await insured(client, start=f"{YEAR - 1}-01-01", end=f"{YEAR}-12-31",
                                    deductible=deductible)
    paid = []
    for serviced in (f"{YEAR - 1}-12-30", f"{YEAR}-06-01", f"{YEAR}-07-01"):
        claim = claim_for(pat, f"Coverage/{cov['id']}", payer, 300, serviced=serviced)
        paid.append(Decimal(str((await post(client, "Claim/$submit", claim)).json()
                                ["payment"]["amount"]["value"])))
    assert paid == [300 - deductible, 300 - deductible, 300]


async def test_encounter_then_encounter_with_appointment_is_one_bill(
        client: httpx.AsyncClient) -> None:
    pat, _, _ = await insured(client)
    encounter = await create(client, {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": pat}})
    appointment = await create(client, {
        "resourceType": "Appointment", "status": "fulfilled",
        "participant": [{"actor": {"reference": pat}, "status": "accepted"}]})
    first = await bill(client, pat, encounter=f"Encounter/{encounter['id']}")
    second = await bill(client, pat, encounter=f"Encounter/{encounter['id']}",
                        appointment=f"Appointment/{appointment['id']}")
    assert second["Invoice"][0]["id"] == first["Invoice"][0]["id"]
    assert await count(client, "Invoice") == 1


async def test_cancelling_a_billed_appointment_leaves_the_issued_bill(
        client: httpx.AsyncClient) -> None:
    pat, _, _ = await insured(client)
    doc = await create(client, {"resourceType": "Practitioner", "name": [{"family": "D"}]})
    appt = await create(client, {
        "resourceType": "Appointment", "status": "booked", "start": f"{YEAR}-05-01T09:00:00Z",
        "end": f"{YEAR}-05-01T09:30:00Z", "participant": [
            {"actor": {"reference": pat}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{doc['id']}"}, "status": "accepted"}]})
    [invoice] = (await bill(client, pat, appointment=f"Appointment/{appt['id']}"))["Invoice"]
    r = await client.put(f"Appointment/{appt['id']}", json={**appt, "status": "cancelled"})
    assert r.status_code == 200
    after = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert after["status"] == "issued"
    assert len(after["lineItem"]) == 1


async def test_delete_and_patient_change_follow_the_draft(client: httpx.AsyncClient) -> None:
    pat, _, _ = await insured(client)
    other = await create(client, patient(family="Other"))
    doc = await create(client, {"resourceType": "Practitioner", "name": [{"family": "D"}]})
    appt = await create(client, {
        "resourceType": "Appointment", "status": "booked", "start": f"{YEAR}-05-01T09:00:00Z",
        "end": f"{YEAR}-05-01T09:30:00Z", "participant": [
            {"actor": {"reference": pat}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{doc['id']}"}, "status": "accepted"}]})
    key = {"identifier": f"urn:fhir-rcm-server:bill|Appointment/{appt['id']}"}
    moved = {**appt, "participant": [{"actor": {"reference": f"Patient/{other['id']}"},
                                      "status": "accepted"}, appt["participant"][1]]}
    assert (await client.put(f"Appointment/{appt['id']}", json=moved)).status_code == 200
    [draft] = [e["resource"] for e in (await client.get("Invoice", params=key)).json()["entry"]]
    assert draft["subject"] == {"reference": f"Patient/{other['id']}"}
    assert (await client.delete(f"Appointment/{appt['id']}")).status_code in (200, 204)
    [draft] = [e["resource"] for e in (await client.get("Invoice", params=key)).json()["entry"]]
    assert draft["status"] == "cancelled"


async def test_a_transaction_can_free_a_slot_and_rebook_it(client: httpx.AsyncClient) -> None:
    pat, _, _ = await insured(client)
    doc = await create(client, {"resourceType": "Practitioner", "name": [{"family": "D"}]})
    booked = {"resourceType": "Appointment", "status": "booked",
              "start": f"{YEAR}-05-01T09:00:00Z", "end": f"{YEAR}-05-01T09:30:00Z",
              "participant": [{"actor": {"reference": pat}, "status": "accepted"},
                              {"actor": {"reference": f"Practitioner/{doc['id']}"},
                               "status": "accepted"}]}
    old = await create(client, booked)
    r = await client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**old, "status": "cancelled"},
         "request": {"method": "PUT", "url": f"Appointment/{old['id']}"}},
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": booked,
         "request": {"method": "POST", "url": "Appointment"}}]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("part", [
    {"name": "price", "valueMoney": {"value": "NaN", "currency": "USD"}},
    {"name": "price", "valueMoney": {"value": 1e30, "currency": "USD"}},
    {"name": "quantity", "valueDecimal": "Infinity"},
    {"name": "quantity", "valueDecimal": 10 ** 27},
    {"name": "price", "valueMoney": {"currency": "USD"}},
])
async def test_unusable_numbers_are_422_and_write_nothing(client: httpx.AsyncClient,
                                                          part: dict[str, Any]) -> None:
    pat, _, _ = await insured(client)
    params = bill_parameters(pat, [service("OPD001")])
    params["parameter"][1]["part"].append(part)
    r = await client.post("Invoice/$generate-bill", json=params)
    assert r.status_code == 422, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert await count(client, "ChargeItem") == 0


async def test_reference_of_the_wrong_json_type_is_4xx(client: httpx.AsyncClient) -> None:
    r = await client.post("Invoice/$generate-bill", json={"resourceType": "Parameters",
                                                          "parameter": [
        {"name": "patient", "valueReference": {"reference": 5}},
        {"name": "service", "part": [{"name": "code", "valueCoding": {"code": "OPD001"}}]}]})
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize("components", [
    [{"type": "base", "amount": {"currency": "USD"}}],
    [{"type": "base", "amount": {"value": 100, "currency": "USD"}},
     {"type": "surcharge", "factor": 1e30}],
    [{"type": "base", "amount": {"value": -100, "currency": "USD"}}],
    [{"type": "base", "amount": {"value": 100, "currency": "USD"}},
     {"type": "discount", "amount": {"value": 150, "currency": "USD"}}],
])
async def test_unusable_price_lists_are_422(client: httpx.AsyncClient,
                                            components: list[dict[str, Any]]) -> None:
    pat = await create(client, patient())
    await create(client, {"resourceType": "ChargeItemDefinition", "url": "urn:x:odd",
                          "status": "active", "code": {"coding": [{"system": SERVICE_SYSTEM,
                                                                    "code": "ODD1"}]},
                          "propertyGroup": [{"priceComponent": components}]})
    r = await post(client, "Invoice/$generate-bill",
                   bill_parameters(f"Patient/{pat['id']}", [service("ODD1")]))
    assert r.status_code == 422, r.text
    assert await count(client, "Invoice") == 0


@pytest.mark.parametrize("cost", [
    {"valueMoney": {"currency": "USD"}}, {"valueQuantity": {"unit": "%"}},
    {"valueMoney": {"value": 1e30, "currency": "USD"}},
    {"valueQuantity": {"value": -5}},
])
async def test_odd_benefits_are_left_out_not_500(client: httpx.AsyncClient,
                                                 cost: dict[str, Any]) -> None:
    _, cov, _ = await insured(client)
    code = "copaypct" if "valueQuantity" in cost else "gpvisit"
    odd = {**cov, "costToBeneficiary": [{"type": {"coding": [{"system": COPAY_TYPE,
                                                              "code": code}]}, **cost}]}
    assert (await client.put(f"Coverage/{cov['id']}", json=odd)).status_code == 200
    r = await post(client, f"Coverage/{cov['id']}/$eligibility", {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    assert "item" not in r.json()["insurance"][0]
    assert await count(client, "CoverageEligibilityRequest") == await count(
        client, "CoverageEligibilityResponse")


async def test_fractional_coinsurance_is_kept_exact(client: httpx.AsyncClient) -> None:
    _, cov, _ = await insured(client)
    odd = {**cov, "costToBeneficiary": [{"type": {"coding": [{"system": COPAY_TYPE,
                                                              "code": "copaypct"}]},
                                         "valueQuantity": {"value": 12.5}}]}
    assert (await client.put(f"Coverage/{cov['id']}", json=odd)).status_code == 200
    r = await post(client, f"Coverage/{cov['id']}/$eligibility", {"resourceType": "Parameters"})
    [benefit] = r.json()["insurance"][0]["item"][0]["benefit"]
    assert benefit["allowedString"] == "12.5%"


@pytest.mark.parametrize("entries", [[None], ["x"], [{"resource": "x"}], {"a": 1}])
async def test_odd_bundles_are_4xx(client: httpx.AsyncClient, entries: Any) -> None:
    for url in ("Claim/$submit", "CoverageEligibilityRequest/$submit"):
        r = await client.post(url, json={"resourceType": "Bundle", "type": "collection",
                                         "entry": entries})
        assert 400 <= r.status_code < 500, r.text


@pytest.mark.parametrize("net", [1e30, -400])
async def test_unusable_claim_amounts_are_error_outcomes_and_stored_together(
        client: httpx.AsyncClient, net: Any) -> None:
    pat, cov, payer = await insured(client)
    r = await client.post("Claim/$submit",
                          json=claim_for(pat, f"Coverage/{cov['id']}", payer, net))
    assert r.status_code in (200, 400, 422), r.text
    if r.status_code == 200:
        assert r.json()["outcome"] == "error"
    assert await count(client, "Claim") == await count(client, "ClaimResponse")


async def test_half_up_rounding_everywhere(client: httpx.AsyncClient) -> None:
    pat = await create(client, patient())
    found = by_type((await post(client, "Invoice/$generate-bill", bill_parameters(
        f"Patient/{pat['id']}", [service("X1", price=Decimal("0.125"))]))).json())
    [invoice] = found["Invoice"]
    assert Decimal(str(invoice["totalGross"]["value"])) == Decimal("0.13")
    assert Decimal(str(found["ChargeItem"][0]["priceOverride"]["value"])) == Decimal("0.125")


async def test_settlement_after_rebilling_uses_the_new_claim(client: httpx.AsyncClient) -> None:
    copay = Decimal(20)
    pat, _, _ = await insured(client, copay=copay)
    first = await bill(client, pat)
    await post(client, "Claim/$submit", first["Claim"][0])
    second = await bill(client, pat, codes=("OPD001", "LAB025"))
    response = (await post(client, "Claim/$submit", second["Claim"][0])).json()
    total = sum(price for _, price in PRICES.values())
    assert Decimal(str(response["payment"]["amount"]["value"])) == total - copay
    invoice = (await client.get(f"Invoice/{second['Invoice'][0]['id']}")).json()
    assert share(invoice, "patient") == copay
