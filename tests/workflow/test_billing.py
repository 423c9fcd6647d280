"""Bill generation, eligibility and claim adjudication on one server (clinic and payer)."""

from __future__ import annotations

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
from tests.workflow.helpers import adjudication, by_type, create, post, share

pytestmark = pytest.mark.usefixtures("price_list")
YEAR = datetime.now(UTC).year


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic"}


@pytest.fixture
async def price_list(client: httpx.AsyncClient) -> None:
    for code in PRICES:
        await create(client, charge_item_definition(code))
    r = await client.put("Organization/clinic",
                         json={"resourceType": "Organization", "id": "clinic", "name": "Clinic"})
    assert r.status_code in (200, 201)


async def insured_patient(client: httpx.AsyncClient, *, copay: Decimal | None = None,
                          deductible: Decimal | None = None, start: str = f"{YEAR}-01-01",
                          end: str = f"{YEAR}-12-31") -> tuple[str, dict[str, Any], str]:
    pat = await create(client, patient())
    payer = await create(client, payer_org("Acme Health", "ACME"))
    cov = await create(client, coverage(patient=f"Patient/{pat['id']}",
                                        payer=f"Organization/{payer['id']}", member_id="M-1",
                                        copay=copay, deductible=deductible, start=start,
                                        end=end))
    return f"Patient/{pat['id']}", cov, f"Organization/{payer['id']}"


async def generate(client: httpx.AsyncClient, params: dict[str, Any]) -> dict[str, Any]:
    r = await post(client, "Invoice/$generate-bill", params)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_example_bill_totals_650_with_claim(client: httpx.AsyncClient) -> None:
    pat, cov, payer = await insured_patient(client)
    bundle = await generate(client, bill_parameters(pat, [service("OPD001"), service("LAB025")]))
    assert bundle["type"] == "collection"
    found = by_type(bundle)
    expected = sum(price for _, price in PRICES.values())
    [invoice] = found["Invoice"]
    assert Decimal(str(invoice["totalGross"]["value"])) == expected == Decimal(650)
    assert Decimal(str(invoice["totalNet"]["value"])) == expected
    assert invoice["status"] == "issued"
    assert len(found["ChargeItem"]) == 2
    assert [line["chargeItemReference"]["reference"] for line in invoice["lineItem"]] == [
        f"ChargeItem/{c['id']}" for c in found["ChargeItem"]]
    for c in found["ChargeItem"]:
        code = c["code"]["coding"][0]["code"]
        assert c["definitionCanonical"] == [f"urn:example:price/{code}"]
    [claim] = found["Claim"]
    assert claim["use"] == "claim"
    assert claim["insurance"][0]["coverage"] == {"reference": f"Coverage/{cov['id']}"}
    assert claim["insurer"] == {"reference": payer}
    assert Decimal(str(claim["total"]["value"])) == expected
    assert [i["productOrService"]["coding"][0]["code"] for i in claim["item"]] == list(PRICES)
    # Everything in the Bundle was stored.
    for entry in bundle["entry"]:
        r = await client.get(entry["fullUrl"].split("/fhir/", 1)[1])
        assert r.status_code == 200


async def test_given_price_quantity_surcharge_discount_and_tax(client: httpx.AsyncClient) -> None:
    pat = await create(client, patient())
    await create(client, {**charge_item_definition("OPD001", extra=[
        {"type": "surcharge", "factor": Decimal("0.1")},
        {"type": "discount", "amount": {"value": Decimal("15"), "currency": "USD"}},
        {"type": "tax", "factor": Decimal("0.05")}]), "url": "urn:example:price/OPD001-2027",
        "date": "2026-06-01"})
    bundle = await generate(client, bill_parameters(f"Patient/{pat['id']}", [
        service("OPD001", quantity=Decimal(2)),
        service("XRAY1", price=Decimal("99.99"), quantity=Decimal(3))]))
    found = by_type(bundle)
    assert "Claim" not in found  # no coverage
    base = PRICES["OPD001"][1] * 2
    net_1 = base + base * Decimal("0.1") - Decimal(15) * 2
    gross_1 = net_1 + net_1 * Decimal("0.05")
    net_2 = Decimal("99.99") * 3
    [invoice] = found["Invoice"]
    assert Decimal(str(invoice["totalNet"]["value"])) == (net_1 + net_2).quantize(Decimal("0.01"))
    assert Decimal(str(invoice["totalGross"]["value"])) == (gross_1 + net_2).quantize(
        Decimal("0.01"))
    kinds = [c["type"] for c in invoice["lineItem"][0]["priceComponent"]]
    assert kinds == ["base", "surcharge", "discount", "tax"]
    given = found["ChargeItem"][1]
    assert Decimal(str(given["priceOverride"]["value"])) == Decimal("99.99")


async def test_unpriced_code_is_422_naming_it(client: httpx.AsyncClient) -> None:
    pat = await create(client, patient())
    r = await post(client, "Invoice/$generate-bill",
                   bill_parameters(f"Patient/{pat['id']}", [service("OPD001"), service("NOPE7")]))
    assert r.status_code == 422
    assert "NOPE7" in r.json()["issue"][0]["diagnostics"]
    r = await client.get("ChargeItem")
    assert r.json()["total"] == 0  # nothing half-written


@pytest.mark.parametrize("params, where", [
    ({"resourceType": "Parameters", "parameter": []}, "patient"),
    ({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/nobody"}},
        {"name": "service", "part": [{"name": "code", "valueCoding": {"code": "OPD001"}}]}]},
     "Patient/nobody"),
    ({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueString": "x"}]}, "patient"),
    ({"resourceType": "Parameters", "parameter": [{"name": "bogus", "valueString": "x"}]},
     "bogus"),
    ({"resourceType": "Patient"}, "Parameters"),
])
async def test_bad_parameters_are_4xx(client: httpx.AsyncClient, params: dict[str, Any],
                                      where: str) -> None:
    r = await post(client, "Invoice/$generate-bill", params)
    assert 400 <= r.status_code < 500
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert where in outcome["issue"][0]["diagnostics"]


async def test_same_encounter_returns_the_same_bill_and_draft_becomes_the_invoice(
        client: httpx.AsyncClient) -> None:
    pat, _, _ = await insured_patient(client)
    doc = await create(client, {"resourceType": "Practitioner", "name": [{"family": "Doc"}]})
    appt = await create(client, {
        "resourceType": "Appointment", "status": "booked", "start": f"{YEAR}-03-01T09:00:00Z",
        "end": f"{YEAR}-03-01T09:30:00Z", "participant": [
            {"actor": {"reference": pat}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{doc['id']}"}, "status": "accepted"}]})
    enc = await create(client, {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": pat}, "appointment": [{"reference": f"Appointment/{appt['id']}"}],
        "period": {"start": f"{YEAR}-03-01T09:00:00Z"}})
    r = await client.get("Invoice", params={"identifier":
                                            f"urn:fhir-rcm-server:bill|Appointment/{appt['id']}"})
    [draft] = [e["resource"] for e in r.json()["entry"]]
    first = by_type(await generate(client, bill_parameters(
        pat, [service("OPD001"), service("LAB025")], encounter=f"Encounter/{enc['id']}")))
    assert first["Invoice"][0]["id"] == draft["id"]
    assert first["Invoice"][0]["meta"]["versionId"] == "2"
    again = by_type(await generate(client, bill_parameters(
        pat, [service("OPD001")], encounter=f"Encounter/{enc['id']}")))
    assert again["Invoice"][0]["id"] == draft["id"]
    assert {c["id"] for c in again["ChargeItem"]} == {c["id"] for c in first["ChargeItem"]}
    assert again["Claim"][0]["id"] == first["Claim"][0]["id"]
    r = await client.get("Invoice", params={"subject": pat})
    assert r.json()["total"] == 1


async def test_eligibility_in_force_expired_and_unknown(client: httpx.AsyncClient) -> None:
    pat, cov, payer = await insured_patient(client, copay=Decimal(20))
    r = await post(client, f"Coverage/{cov['id']}/$eligibility", {
        "resourceType": "Parameters", "parameter": [{"name": "serviced",
                                                     "valueDate": f"{YEAR}-06-01"}]})
    assert r.status_code == 200, r.text
    response = r.json()
    assert response["resourceType"] == "CoverageEligibilityResponse"
    assert response["outcome"] == "complete"
    assert response["insurance"][0]["inforce"] is True
    benefit = response["insurance"][0]["item"][0]["benefit"][0]
    assert benefit["type"]["coding"][0]["code"] == "copay"
    assert Decimal(str(benefit["allowedMoney"]["value"])) == Decimal(20)
    request = await client.get(response["request"]["reference"])
    assert request.status_code == 200
    assert request.json()["insurance"][0]["coverage"]["reference"] == f"Coverage/{cov['id']}"
    stored = await client.get(f"CoverageEligibilityResponse/{response['id']}")
    assert stored.json()["request"] == response["request"]
    # Outside the period: not in force.
    r = await post(client, f"Coverage/{cov['id']}/$eligibility", {
        "resourceType": "Parameters", "parameter": [{"name": "serviced",
                                                     "valueDate": f"{YEAR + 1}-02-01"}]})
    assert r.json()["insurance"][0]["inforce"] is False
    # An unknown member, asked with a CoverageEligibilityRequest carrying its coverage contained.
    unknown = {
        "resourceType": "CoverageEligibilityRequest", "status": "active",
        "purpose": ["validation"], "patient": {"reference": pat}, "created": f"{YEAR}-06-01",
        "insurer": {"reference": payer},
        "contained": [{"resourceType": "Coverage", "id": "c1", "status": "active",
                       "subscriberId": "NOT-A-MEMBER", "beneficiary": {"reference": pat},
                       "payor": [{"reference": payer}]}],
        "insurance": [{"coverage": {"reference": "#c1"}}]}
    r = await post(client, "CoverageEligibilityRequest/$submit", unknown)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["outcome"] == "complete"
    assert answer["insurance"][0]["inforce"] is False
    assert answer["error"][0]["code"]["coding"][0]["code"] == "member-not-found"


async def test_claim_adjudicated_locally_updates_the_invoice(client: httpx.AsyncClient) -> None:
    copay = Decimal(30)
    pat, _, _ = await insured_patient(client, copay=copay)
    bill = by_type(await generate(client, bill_parameters(pat, [service("OPD001"),
                                                                service("LAB025")])))
    [claim] = bill["Claim"]
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text
    response = r.json()
    assert response["resourceType"] == "ClaimResponse"
    assert response["outcome"] == "complete"
    assert response["request"] == {"reference": f"Claim/{claim['id']}"}
    total = sum(price for _, price in PRICES.values())
    assert Decimal(str(response["payment"]["amount"]["value"])) == total - copay
    first = response["item"][0]
    assert adjudication(first, "submitted") == PRICES["OPD001"][1]
    assert adjudication(first, "copay") == copay
    assert adjudication(first, "benefit") == PRICES["OPD001"][1] - copay
    invoice = (await client.get(f"Invoice/{bill['Invoice'][0]['id']}")).json()
    assert share(invoice, "insurer") == total - copay
    assert share(invoice, "patient") == copay
    assert invoice["status"] == "issued"
    # Submitting the same claim again returns the same answer, adjudicated once.
    again = (await post(client, "Claim/$submit", claim)).json()
    assert again["id"] == response["id"]
    r = await client.get("ClaimResponse", params={"request": f"Claim/{claim['id']}"})
    assert r.json()["total"] == 1


@pytest.mark.slow
async def test_no_copay_balances_the_invoice_and_deductible_carries_over(
        client: httpx.AsyncClient) -> None:
    deductible = Decimal(500)
    pat, _, _ = await insured_patient(client, deductible=deductible)
    total = sum(price for _, price in PRICES.values())
    paid = []
    for _ in range(2):
        bill = by_type(await generate(client, bill_parameters(pat, [service("OPD001"),
                                                                    service("LAB025")])))
        response = (await post(client, "Claim/$submit", bill["Claim"][0])).json()
        paid.append(Decimal(str(response["payment"]["amount"]["value"])))
    assert paid == [total - deductible, total]  # the year's deductible is met by the first
    invoice = (await client.get(f"Invoice/{bill['Invoice'][0]['id']}")).json()
    assert invoice["status"] == "balanced"
    assert share(invoice, "patient") == 0


async def test_claim_on_expired_coverage_is_an_error_outcome(client: httpx.AsyncClient) -> None:
    pat, cov, payer = await insured_patient(client)
    claim = {
        "resourceType": "Claim", "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                             "code": "professional"}]},
        "use": "claim", "patient": {"reference": pat}, "created": f"{YEAR + 1}-02-01",
        "provider": {"reference": "Organization/clinic"}, "insurer": {"reference": payer},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True,
                       "coverage": {"reference": f"Coverage/{cov['id']}"}}],
        "item": [{"sequence": 1, "productOrService": {"coding": [
            {"system": SERVICE_SYSTEM, "code": "OPD001"}]}, "servicedDate": f"{YEAR + 1}-02-01",
            "net": {"value": 400, "currency": "USD"}}]}
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "error"
    assert r.json()["error"][0]["code"]["coding"][0]["code"] == "coverage-not-in-force"


async def test_operation_definitions_served_and_listed(client: httpx.AsyncClient) -> None:
    meta = (await client.get("metadata")).json()
    listed = {(r["type"], op["name"]): op["definition"]
              for r in meta["rest"][0]["resource"] for op in r.get("operation", [])}
    expected = {("CoverageEligibilityRequest", "submit"): "CoverageEligibilityRequest-submit",
                ("Coverage", "eligibility"): "Coverage-eligibility",
                ("Invoice", "generate-bill"): "Invoice-generate-bill",
                ("Claim", "submit"): "Claim-submit",
                ("PaymentReconciliation", "import-835"): "PaymentReconciliation-import-835",
                ("Invoice", "record-payment"): "Invoice-record-payment",
                ("Endpoint", "sync"): "Endpoint-sync"}
    assert set(expected) <= set(listed)  # and the terminology operations (tests/terminology)
    for (type_, code), id_ in expected.items():
        r = await client.get(f"OperationDefinition/{id_}")
        assert r.status_code == 200
        definition = r.json()
        assert definition["code"] == code
        assert definition["resource"] == [type_]
        assert definition["url"] == listed[(type_, code)]
    r = await client.post("Claim/$nope", json={"resourceType": "Parameters"})
    assert r.status_code == 404
