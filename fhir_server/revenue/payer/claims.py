"""This server as the payer answering a Claim: the ClaimResponse, ``complete`` with the
adjudication (``adjudication.py``) when the member's Coverage is in force and every item
can be read, else ``error`` with the reason's code. Nothing is written here."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.errors import Unprocessable
from fhir_server.core.money import money
from fhir_server.revenue.amounts import item_amount
from fhir_server.revenue.cob import left_to_bill
from fhir_server.revenue.corrections import frequency_of
from fhir_server.revenue.coverage import in_force
from fhir_server.revenue.payer.adjudication import (
    adjudicate,
    deductible_met,
    deductible_taken,
    plan_rules,
)
from fhir_server.revenue.payer.members import (
    Member,
    beneficiary_ref,
    claim_service_date,
    coverage_ref,
    error_code,
)
from fhir_server.revenue.records import Resource, ref
from fhir_server.revenue.states import ClaimOutcome, transition
from fhir_server.storage.model import instant, now_ms
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import PAYMENT_TYPE


async def adjudicate_claim(*, repo: Repository, settings: Settings, claim: Resource,
                           claim_ref: str, member: Member,
                           submitted_coverage: Resource | None,
                           earlier: list[Resource] | None = None,
                           replaced: Resource | None = None) -> Resource:
    """The ClaimResponse (no id yet) this server, as the payer, answers ``claim`` with;
    ``earlier``: the answers of the payers billed before this one (``Claim.insurance``'s
    ``claimResponse``s), whose payments and adjustments come off what it pays;
    ``replaced``: this payer's answer to the claim a correction replaces or voids (a void
    is answered complete with nothing paid; a replacement is adjudicated as if that
    answer's deductible had not been taken)."""
    today = datetime.now(UTC).date()
    on = claim_service_date(claim, fallback=today)
    currency = settings.fhir_billing_currency
    response: Resource = {
        "resourceType": "ClaimResponse", "status": "active", "type": claim["type"],
        "use": claim["use"], "patient": beneficiary_ref(member, claim.get("patient")),
        "created": instant(now_ms()),
        "insurer": ref(member.payer) if member.payer else {"display": "Payer"},
        "request": {"reference": claim_ref},
        "insurance": [{"sequence": 1, "focal": True,
                       "coverage": coverage_ref(member, submitted_coverage)}],
    }
    provider = (claim.get("provider") or {}).get("reference")
    if isinstance(provider, str) and not provider.startswith("#"):
        response["requestor"] = {"reference": provider}
    errors = refusal(member, on, claim, currency)
    if errors:
        response.update(outcome=transition("ClaimResponse", None, ClaimOutcome.ERROR),
                        disposition="Claim not adjudicated", error=errors)
        return response
    assert member.coverage is not None
    if frequency_of(claim) == "8":
        response.update(outcome=transition("ClaimResponse", None, ClaimOutcome.COMPLETE),
                        disposition="Claim voided: nothing is paid",
                        payment={"type": {"coding": [{"system": PAYMENT_TYPE,
                                                      "code": "complete"}]},
                                 "date": today.isoformat(), "amount": money(Decimal(0), currency)})
        return response
    rules = await plan_rules(repo=repo, settings=settings, coverage=member.coverage)
    met = await deductible_met(repo=repo, settings=settings, member=member, year=on.year)
    if replaced is not None and member.reference in {
            (i.get("coverage") or {}).get("reference") for i in replaced.get("insurance") or []}:
        met -= deductible_taken(replaced)  # the replaced answer's deductible is taken again
    unpaid = left_to_bill(claim, earlier) if earlier else None
    result = adjudicate(claim, rules, deductible_left=max(Decimal(0), rules.deductible - met),
                        currency=currency, unpaid=unpaid)
    response.update(
        outcome=transition("ClaimResponse", None, ClaimOutcome.COMPLETE),
        disposition="Claim settled as per contract", item=result.items, total=result.totals,
        payment={"type": {"coding": [{"system": PAYMENT_TYPE, "code": "complete"}]},
                 "date": today.isoformat(), "amount": money(result.benefit, currency)})
    if unpaid is not None:
        response["processNote"] = [{"number": 1, "type": "display", "text": (
            f"Paid after {len(earlier or [])} earlier payer(s): at most the "
            f"{money(unpaid, currency)['value']} {currency} they left of the claim")}]
    return response


def refusal(member: Member, on: date, claim: Resource, currency: str) -> list[dict[str, Any]]:
    """Why the claim is not adjudicated (the ClaimResponse's ``error``), or nothing."""
    if member.coverage is None:
        return [error_code("member-not-found", "Member not found")]
    if not in_force(member.coverage, on):
        return [error_code("coverage-not-in-force", "Coverage not in force on the service date")]
    items = claim.get("item") or []
    if not items:
        return [error_code("no-items", "The claim has no items")]
    for item in items:
        try:
            amount = item_amount(item)
        except Unprocessable:
            return [error_code("invalid-amount", "An item's amount cannot be read")]
        if amount < 0:
            return [error_code("invalid-amount", "An item's amount is negative")]
        for money_ in (item.get("net"), item.get("unitPrice")):
            if isinstance(money_, dict) and money_.get("currency", currency) != currency:
                return [error_code("invalid-currency", f"Amounts must be in {currency}")]
    return []
