"""ChargeItemDefinition/$apply prices exactly as Invoice/$generate-bill does."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.factories import SERVICE_SYSTEM, bill_parameters, charge_item_definition, patient, service
from tests.workflow.helpers import by_type, create, post


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic"}


def definition_with_rules() -> dict[str, Any]:
    """A base price, a surcharge that applies to more than one unit, a discount factor and tax."""
    out = charge_item_definition("OPD001", extra=[
        {"type": "discount", "factor": Decimal("0.1")},
        {"type": "tax", "factor": Decimal("0.07")}])
    out["propertyGroup"].append({
        "applicability": [{"language": "text/fhirpath", "expression": "quantity.value > 1"}],
        "priceComponent": [{"type": "surcharge", "amount": {"value": Decimal("12.345"),
                                                            "currency": "USD"}}]})
    return out


async def apply(client: httpx.AsyncClient, definition_id: str, item_id: str) -> httpx.Response:
    return await post(client, f"ChargeItemDefinition/{definition_id}/$apply", {
        "resourceType": "Parameters", "parameter": [
            {"name": "chargeItem", "valueReference": {"reference": f"ChargeItem/{item_id}"}}]})


async def test_apply_matches_generate_bill(client: httpx.AsyncClient) -> None:
    definition = await create(client, definition_with_rules())
    pat = await create(client, patient())
    for quantity in (Decimal(1), Decimal(3)):
        r = await post(client, "Invoice/$generate-bill", bill_parameters(
            f"Patient/{pat['id']}", [service("OPD001", quantity=quantity)]))
        assert r.status_code == 200, r.text
        bill = by_type(r.json())
        (item,) = bill["ChargeItem"]
        (invoice,) = bill["Invoice"]
        r = await apply(client, definition["id"], item["id"])
        assert r.status_code == 200, r.text
        priced = r.json()
        assert priced["resourceType"] == "Invoice" and priced["status"] == "draft"
        assert priced["lineItem"][0]["priceComponent"] == invoice["lineItem"][0]["priceComponent"]
        assert priced["totalNet"] == invoice["totalNet"]
        assert priced["totalGross"] == invoice["totalGross"]
        assert priced["subject"] == {"reference": f"Patient/{pat['id']}"}


async def test_apply_refuses_what_it_cannot_price(client: httpx.AsyncClient) -> None:
    definition = await create(client, definition_with_rules())
    pat = await create(client, patient())
    other = await create(client, {
        "resourceType": "ChargeItem", "status": "billable",
        "code": {"coding": [{"system": SERVICE_SYSTEM, "code": "LAB025"}]},
        "subject": {"reference": f"Patient/{pat['id']}"}})
    r = await apply(client, definition["id"], other["id"])
    assert r.status_code == 422  # not this definition's code
    r = await apply(client, definition["id"], "missing")
    assert r.status_code in (404, 422)
    r = await apply(client, "missing", other["id"])
    assert r.status_code == 404
    r = await post(client, f"ChargeItemDefinition/{definition['id']}/$apply",
                   {"resourceType": "Parameters", "parameter": [
                       {"name": "chargeItem", "valueReference": {"reference": "Patient/x"}}]})
    assert r.status_code == 422
    r = await client.get(f"ChargeItemDefinition/{definition['id']}/$apply",
                         params={"chargeItem": "ChargeItem/x"})
    assert r.status_code == 400  # a Reference cannot travel in a URL
