"""An Invoice's balance (revenue/balances.py): running shares, owed, credit and status."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from fhir_server.revenue.balances import (
    Posting,
    adjudication_posting,
    balance,
    currency_of,
    post,
    response_share,
    shares,
)
from fhir_server.revenue.states import TransitionRefused
from fhir_server.terminology.systems import INVOICE_SHARE, X12_CAS_GROUP

GROSS = Decimal("650.00")


def invoice(status: str = "issued", gross: Decimal = GROSS) -> dict[str, Any]:
    return {"resourceType": "Invoice", "id": "inv1", "status": status,
            "meta": {"versionId": "3"}, "totalGross": {"value": gross, "currency": "USD"},
            "totalPriceComponent": [{"type": "base", "amount": {"value": gross}}]}


def claim_response(paid: str, outcome: str = "complete", **groups: str) -> dict[str, Any]:
    return {"resourceType": "ClaimResponse", "outcome": outcome,
            "payment": {"amount": {"value": Decimal(paid)}},
            "total": [{"category": {"coding": [{"system": X12_CAS_GROUP, "code": g}]},
                       "amount": {"value": Decimal(v)}} for g, v in groups.items()]}


def test_an_insurer_payment_leaves_the_rest_owed() -> None:
    paid = Decimal("520.00")
    after = post(invoice(), Posting(insurer=paid), "USD")
    assert shares(after)["insurer"] == paid
    assert shares(after)["patient"] == GROSS - paid
    assert after["status"] == "issued" and "meta" not in after and after["id"] == "inv1"
    assert after["totalPriceComponent"][0]["type"] == "base"  # the bill's own lines kept
    codes = [c["code"]["coding"][0] for c in after["totalPriceComponent"][1:]]
    assert all(c["system"] == INVOICE_SHARE for c in codes)
    assert "credit" not in {c["code"] for c in codes}


def test_paying_the_rest_balances_it_and_overpaying_is_credit() -> None:
    insurer, patient = Decimal("520.00"), Decimal("130.00")
    settled = post(post(invoice(), Posting(insurer=insurer), "USD"),
                   Posting(patient_paid=patient), "USD")
    assert settled["status"] == "balanced"
    assert shares(settled)["patient"] == GROSS - insurer - patient == 0
    extra = Decimal("5.25")
    over = post(settled, Posting(patient_paid=extra), "USD")
    assert over["status"] == "balanced"
    assert shares(over)["credit"] == extra and shares(over)["patient"] == 0


def test_a_reversal_makes_a_balanced_invoice_owe_again() -> None:
    settled = post(invoice(), Posting(insurer=GROSS), "USD")
    assert settled["status"] == "balanced"
    reversed_ = post(settled, Posting(insurer=-Decimal("100")), "USD")
    assert reversed_["status"] == "issued" and shares(reversed_)["patient"] == Decimal(100)


@pytest.mark.parametrize("status", ["draft", "cancelled", "entered-in-error"])
def test_only_an_issued_bill_takes_postings(status: str) -> None:
    with pytest.raises(TransitionRefused):
        post(invoice(status), Posting(insurer=Decimal(1)), "USD")


def test_adjustments_other_than_patient_responsibility_count() -> None:
    response = claim_response("400.00", CO="150.00", PR="30.00", OA="20.00")
    assert response_share(response) == (Decimal("400.00"), Decimal("170.00"))
    assert response_share(claim_response("400", outcome="queued")) == (0, 0)
    assert response_share(None) == (0, 0)


def test_a_replacing_adjudication_posts_the_difference() -> None:
    first, second = claim_response("300", CO="50"), claim_response("420", CO="80")
    posting = adjudication_posting(second, first)
    assert posting == Posting(insurer=Decimal(120), adjustment=Decimal(30))
    assert adjudication_posting(first, None) == Posting(insurer=Decimal(300),
                                                        adjustment=Decimal(50))


def test_balance_and_currency() -> None:
    values = balance(invoice(), Posting(insurer=Decimal(600), adjustment=Decimal(70)))
    assert values["patient"] == 0 and values["credit"] == Decimal(600 + 70) - GROSS
    assert currency_of(invoice(), "EUR") == "USD"
    assert currency_of({"totalGross": {"value": 1}}, "EUR") == "EUR"
