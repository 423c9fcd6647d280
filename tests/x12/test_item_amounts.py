"""A discounted line (``Claim.item.factor``) bills the same amount over FHIR and over X12:
what this server, as the payer, adjudicates as submitted, and what the 837P that a real
loopback clearinghouse receives carries in SV102 and CLM02."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest

from tests.workflow.helpers import create, post
from tests.x12.edi import elements
from tests.x12.world import bill as make_bill
from tests.x12.world import patient_with_coverage, setup_clinic

CENT = Decimal("0.01")
# The discounted line: 3 units at 33.33 with a 15% discount (factor 0.85).
UNIT, QUANTITY, FACTOR = Decimal("33.33"), Decimal(3), Decimal("0.85")


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic", "fhir_payer_read_timeout": 20.0}


def discounted(claim: dict[str, Any]) -> dict[str, Any]:
    """The bill's Claim, its first line priced by unit, quantity and factor (no net)."""
    out = {k: v for k, v in claim.items() if k not in ("id", "meta", "identifier", "total")}
    first = {k: v for k, v in out["item"][0].items() if k not in ("net", "unitPrice")}
    first.update(unitPrice={"value": UNIT, "currency": "USD"}, quantity={"value": QUANTITY},
                 factor=FACTOR)
    out["item"] = [first, *out["item"][1:]]
    return out


def expected_amounts(claim: dict[str, Any]) -> dict[int, Decimal]:
    """Each item's amount from the input: net, else unit x quantity x factor, half up."""
    out = {}
    for item in claim["item"]:
        if "net" in item:
            amount = Decimal(str(item["net"]["value"]))
        else:
            amount = (Decimal(str(item["unitPrice"]["value"]))
                      * Decimal(str(item["quantity"]["value"])) * Decimal(str(item["factor"])))
        out[item["sequence"]] = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    return out


async def sent_837(clearinghouse: str) -> str:
    async with httpx.AsyncClient() as http:
        received = (await http.get(f"{clearinghouse}/admin/received")).json()
    last = [x for x in received if x["kind"] == "837"][-1]
    assert last["valid"], last["ack"]
    text: str = last["text"]
    return text


def submitted(response: dict[str, Any]) -> dict[int, Decimal]:
    return {item["itemSequence"]: Decimal(str(a["amount"]["value"]))
            for item in response["item"] for a in item["adjudication"]
            if a["category"]["coding"][0]["code"] == "submitted"}


@pytest.mark.process
async def test_a_discounted_line_bills_the_same_over_fhir_and_x12(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    world = await setup_clinic(client, clearinghouse)
    member = await patient_with_coverage(client, world, member="M100")
    claim = discounted((await make_bill(client, world, member["patient"]))["Claim"][0])
    expected = expected_amounts(claim)
    assert expected[1] != (UNIT * QUANTITY).quantize(CENT)  # the factor matters here

    # Over X12: the payer's clearinghouse receives the 837P.
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text
    text = await sent_837(clearinghouse)
    lines = [Decimal(s[2]) for s in elements(text) if s[0] == "SV1"]
    sequences = [int(s[2]) for s in elements(text) if s[0] == "REF" and s[1] == "6R"]
    assert dict(zip(sequences, lines, strict=True)) == expected
    clm02 = Decimal(next(s for s in elements(text) if s[0] == "CLM")[2])
    assert clm02 == sum(expected.values())

    # Over FHIR: the same claim to a payer this server answers for itself.
    payer = await create(client, {"resourceType": "Organization", "name": "Local Payer"})
    year = datetime.now(UTC).year
    coverage = await create(client, {
        "resourceType": "Coverage", "status": "active", "subscriberId": "L100",
        "beneficiary": {"reference": f"Patient/{member['patient']['id']}"},
        "payor": [{"reference": f"Organization/{payer['id']}"}],
        "period": {"start": f"{year}-01-01", "end": f"{year}-12-31"}})
    here = {**claim, "insurer": {"reference": f"Organization/{payer['id']}"},
            "insurance": [{"sequence": 1, "focal": True,
                           "coverage": {"reference": f"Coverage/{coverage['id']}"}}]}
    r = await post(client, "Claim/$submit", here)
    assert r.status_code == 200, r.text
    response = r.json()
    assert response["outcome"] == "complete"
    assert submitted(response) == expected
    total = next(t for t in response["total"]
                 if t["category"]["coding"][0]["code"] == "submitted")
    assert Decimal(str(total["amount"]["value"])) == clm02
