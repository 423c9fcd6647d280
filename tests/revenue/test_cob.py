"""The claim to the next payer (``revenue/cob.py``), from a claim and its payer's answer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server.revenue.cob import (
    earlier_responses,
    left_to_bill,
    next_claim_id,
    next_insurance,
    next_payer_claim,
)

TOTAL = Decimal("650.00")


def claim(*, focal: int = 1, coverages: int = 2, answered: int = 0) -> dict[str, Any]:
    """A claim of ``TOTAL`` listing ``coverages`` Coverages, ``focal`` the billed one, the
    first ``answered`` of them naming their payer's answer."""
    return {"resourceType": "Claim", "id": "c1", "meta": {"versionId": "1"},
            "total": {"value": TOTAL, "currency": "USD"},
            "item": [{"sequence": 1, "net": {"value": TOTAL, "currency": "USD"}}],
            "insurer": {"reference": "Organization/first"},
            "insurance": [{"sequence": n, "focal": n == focal,
                           "coverage": {"reference": f"Coverage/k{n}"},
                           **({"claimResponse": {"reference": f"ClaimResponse/r{n}"}}
                              if n <= answered else {})}
                          for n in range(1, coverages + 1)]}


def answer(id_: str, paid: Decimal, outcome: str = "complete") -> dict[str, Any]:
    return {"resourceType": "ClaimResponse", "id": id_, "outcome": outcome,
            "payment": {"amount": {"value": paid, "currency": "USD"}}}


def test_what_the_primary_left_goes_to_the_secondary() -> None:
    first = claim()
    after = next_payer_claim(first, answer("r1", Decimal(620)), earlier=[],
                             payor={"reference": "Organization/second"}, created="2026-12-07")
    assert after is not None
    assert after["id"] == next_claim_id("c1") != "c1" and "meta" not in after
    assert after["insurer"] == {"reference": "Organization/second"}
    assert after["related"][0]["claim"] == {"reference": "Claim/c1"}
    assert [(i["focal"], i.get("claimResponse")) for i in after["insurance"]] == [
        (False, {"reference": "ClaimResponse/r1"}), (True, None)]
    assert after["item"] == first["item"] and after["total"] == first["total"]
    assert earlier_responses(after) == ["ClaimResponse/r1"]
    assert left_to_bill(after, [answer("r1", Decimal(620))]) == TOTAL - 620


def test_the_tertiary_follows_the_secondary_with_both_answers_named() -> None:
    second = claim(focal=2, coverages=3, answered=1)
    assert next_insurance(second) == second["insurance"][2]
    after = next_payer_claim(second, answer("r2", Decimal(10)),
                             earlier=[answer("r1", Decimal(600))], payor=None, created="x")
    assert after is not None and "insurer" not in after
    assert earlier_responses(after) == ["ClaimResponse/r1", "ClaimResponse/r2"]
    assert left_to_bill(after, [answer("r1", Decimal(600)), answer("r2", Decimal(10))]) == \
        TOTAL - 610


def test_no_next_claim_without_a_complete_answer_a_next_coverage_or_a_balance() -> None:
    assert next_payer_claim(claim(), answer("r1", Decimal(0), "error"), earlier=[], payor=None,
                            created="x") is None
    assert next_payer_claim(claim(coverages=1), answer("r1", Decimal(1)), earlier=[],
                            payor=None, created="x") is None
    assert next_payer_claim(claim(), answer("r1", TOTAL), earlier=[], payor=None,
                            created="x") is None
