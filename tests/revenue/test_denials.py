"""Which lines of a payer's answer are denials, and their category (``revenue/denials.py``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server.revenue.denials import CATEGORIES, SETTLEMENT, denials
from fhir_server.terminology.systems import X12_CARC, X12_CAS_GROUP


def adjustment(group: str, carc: str, amount: str) -> dict[str, Any]:
    return {"category": {"coding": [{"system": X12_CAS_GROUP, "code": group}]},
            "reason": {"coding": [{"system": X12_CARC, "code": carc}]},
            "amount": {"value": Decimal(amount), "currency": "USD"}}


def test_settlement_is_not_a_denial_and_each_denial_has_its_category() -> None:
    response = {"adjudication": [adjustment("CO", "29", "650")], "item": [
        {"itemSequence": 1, "adjudication": [adjustment("PR", "3", "30"),
                                             adjustment("CO", "45", "20")]},
        {"itemSequence": 2, "adjudication": [adjustment("CO", "18", "250")]},
        {"itemSequence": 3, "adjudication": [adjustment("CO", "97", "10"),
                                             adjustment("CO", "197", "5")]}]}
    found = denials(response)
    assert [(d.item, d.category, d.amount) for d in found] == [
        ("claim", "timely-filing", Decimal(650)), ("line:2", "duplicate", Decimal(250)),
        ("line:3", "other", Decimal(15))]
    assert not SETTLEMENT & set(CATEGORIES)


def test_an_answer_without_carc_reasons_has_no_denials() -> None:
    assert denials({"item": [{"itemSequence": 1, "adjudication": [
        {"category": {"coding": [{"code": "benefit"}]}, "amount": {"value": 10}}]}]}) == []
