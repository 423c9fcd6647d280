"""The payer's arithmetic (revenue/payer/adjudication.py): copay, deductible, coinsurance."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from fhir_server.revenue.coverage import focal_insurance, in_force, primary_coverage
from fhir_server.revenue.payer.adjudication import (
    ItemRule,
    PlanRules,
    adjudicate,
    rules_from_coverage,
)
from fhir_server.terminology.systems import COPAY_TYPE

CENT = Decimal("0.01")


def item(sequence: int, code: str, net: str) -> dict[str, Any]:
    return {"sequence": sequence, "productOrService": {"coding": [{"system": "urn:s",
                                                                   "code": code}]},
            "net": {"value": Decimal(net), "currency": "USD"}}


def amounts(entries: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {e["category"]["coding"][0]["code"]: Decimal(str(e.get("amount", {}).get(
        "value", e.get("value")))) for e in entries}


def test_copay_then_deductible_then_coinsurance() -> None:
    rules = PlanRules(copay=Decimal(30), deductible=Decimal(500), coinsurance=Decimal(20))
    claim = {"item": [item(2, "LAB", "250"), item(1, "OPD", "400")]}
    deductible_left = Decimal(200)
    result = adjudicate(claim, rules, deductible_left=deductible_left, currency="USD")
    first, second = (amounts(i["adjudication"]) for i in result.items)
    assert [i["itemSequence"] for i in result.items] == [1, 2]  # in sequence order
    # Item 1 (400): the whole copay, then the 200 of deductible left, then 20% of the rest.
    rest = Decimal(400) - 30 - deductible_left
    assert first["copay"] == 30 and first["deductible"] == deductible_left
    assert first["benefit"] == rest - (rest * 20 / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    assert first["eligpercent"] == 80
    # Item 2 (250): no copay or deductible left, only coinsurance.
    assert second["copay"] == 0 and second["deductible"] == 0
    assert second["benefit"] == Decimal(250) - Decimal(250) * 20 / 100
    assert result.benefit == first["benefit"] + second["benefit"]
    totals = amounts(result.totals)
    assert totals["submitted"] == Decimal(650)
    assert totals["deductible"] == deductible_left and totals["copay"] == 30


def test_an_item_rule_overrides_the_plan() -> None:
    rules = PlanRules(copay=Decimal(30), coinsurance=Decimal(10))
    rules.items[("urn:s", "LAB")] = ItemRule(covered=False)
    rules.items[(None, "XR")] = ItemRule(copay=Decimal(15), coinsurance=Decimal(50))
    claim = {"item": [item(1, "LAB", "250"), item(2, "XR", "100.01")]}
    result = adjudicate(claim, rules, deductible_left=Decimal(0), currency="USD")
    lab, xray = (amounts(i["adjudication"]) for i in result.items)
    assert lab["eligible"] == 0 and lab["benefit"] == 0 and lab["submitted"] == 250
    rest = Decimal("100.01") - 15
    coinsurance = (rest * 50 / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    assert xray["copay"] == 15 and xray["benefit"] == rest - coinsurance
    assert result.benefit == xray["benefit"]


def test_the_amount_adjudicated_is_the_item_amount_with_its_factor() -> None:
    line = {"sequence": 1, "productOrService": {"coding": [{"code": "OPD"}]},
            "unitPrice": {"value": Decimal("33.33")}, "quantity": {"value": 3},
            "factor": Decimal("0.85")}
    result = adjudicate({"item": [line]}, PlanRules(), deductible_left=Decimal(0),
                        currency="USD")
    expected = (Decimal("33.33") * 3 * Decimal("0.85")).quantize(CENT, rounding=ROUND_HALF_UP)
    assert amounts(result.items[0]["adjudication"])["submitted"] == expected
    assert result.benefit == expected


def test_rules_from_a_coverage() -> None:
    def cost(code: str, value: str) -> dict[str, Any]:
        return {"type": {"coding": [{"system": COPAY_TYPE, "code": code}]},
                "valueMoney": {"value": Decimal(value), "currency": "USD"}}
    rules = rules_from_coverage({"costToBeneficiary": [
        cost("gpvisit", "25"), cost("copay", "40"), cost("deductible", "300"),
        cost("copaypct", "15"), cost("copaypct", "150")]})
    assert rules.copay == 25  # the first copay type wins
    assert rules.deductible == 300 and rules.coinsurance == 15  # 150% is not a percentage


def test_focal_insurance_and_coverage_in_force() -> None:
    assert focal_insurance({"insurance": [{"sequence": 1}, {"sequence": 2, "focal": True}]}) \
        == {"sequence": 2, "focal": True}
    assert focal_insurance({"insurance": [{"sequence": 1}]}) == {"sequence": 1}
    assert focal_insurance({}) is None
    active = {"id": "b", "status": "active", "period": {"start": "2026-01", "end": "2026-06"}}
    assert in_force(active, date(2026, 6, 30)) and not in_force(active, date(2026, 7, 1))
    assert not in_force({**active, "status": "cancelled"}, date(2026, 3, 1))
    second = {"id": "a", "status": "active", "order": 2}
    first = {"id": "c", "status": "active", "order": 1}
    assert primary_coverage([second, active, first], date(2026, 3, 1)) is first
    assert primary_coverage([second, active], date(2026, 3, 1)) is second
    assert primary_coverage([], date(2026, 3, 1)) is None
