"""Adjudicating a Claim as the payer. The rules are data:

* by default, the member Coverage's ``costToBeneficiary``: a ``copay`` (or
  ``gpvisit``/``spvisit``/... copay types) per claim, a ``deductible`` per
  calendar year, and ``copaypct`` as coinsurance (the member's percentage);
* a payer can state its own rules per plan in an InsurancePlan whose
  ``identifier`` value equals the Coverage's ``class`` of type ``plan``: the
  plan's ``generalCost`` (types ``copay``, ``deductible`` with a ``cost``) replace
  the defaults, and ``specificCost`` entries whose ``category`` has a service's
  code set that service's rules: ``benefit.cost`` of type ``copay`` (Money
  quantity), ``coinsurance`` (percent) or ``notcovered``.

Per item: ``submitted`` is its amount (``revenue/amounts.py``); ``eligible`` is the
submitted amount (0 when not covered); the copay, then what remains of the year's
deductible (less what earlier claims on this Coverage already applied), then coinsurance
come off; the rest is the ``benefit`` the payer pays. ``payment.amount`` is the sum of the benefits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.errors import Unprocessable
from fhir_server.core.money import cents, decimal_of, money
from fhir_server.revenue.amounts import item_amount
from fhir_server.revenue.payer.members import Member, claim_service_date
from fhir_server.revenue.records import Resource, read_local
from fhir_server.revenue.states import ClaimOutcome
from fhir_server.service import interactions as svc
from fhir_server.service.criteria import search_token
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import ADJUDICATION, COPAY_TYPE, COVERAGE_CLASS

COPAY_CODES = {"copay", "gpvisit", "spvisit", "emergency", "inpthosp", "televisit",
               "urgentcare"}
ZERO = Decimal(0)


@dataclass
class ItemRule:
    copay: Decimal | None = None
    coinsurance: Decimal | None = None  # percent the member pays
    covered: bool = True


@dataclass
class PlanRules:
    copay: Decimal = ZERO
    deductible: Decimal = ZERO
    coinsurance: Decimal = ZERO
    items: dict[tuple[str | None, str], ItemRule] = field(default_factory=dict)

    def for_item(self, coding: dict[str, Any]) -> ItemRule:
        return (self.items.get((coding.get("system"), str(coding.get("code"))))
                or self.items.get((None, str(coding.get("code")))) or ItemRule())


def _codes(concept: Any) -> list[str]:
    return [str(c.get("code")) for c in (concept or {}).get("coding") or []
            if c.get("system") in (None, COPAY_TYPE, "http://terminology.hl7.org/CodeSystem/"
                                   "insuranceplan-cost-type")]


def _rule_value(value: Any) -> Decimal | None:
    """A rule's amount, or None when the payer's data holds no usable one (ignored)."""
    if value is None:
        return None
    try:
        amount = decimal_of(value)
    except Unprocessable:
        return None
    return amount if amount >= 0 else None


def rules_from_coverage(coverage: Resource) -> PlanRules:
    rules = PlanRules()
    for cost in coverage.get("costToBeneficiary") or []:
        codes = set(_codes(cost.get("type")))
        value = cost.get("valueMoney") or cost.get("valueQuantity") or {}
        amount = _rule_value(value.get("value"))
        if amount is None:
            continue
        if codes & COPAY_CODES and rules.copay == ZERO:
            rules.copay = amount
        elif "deductible" in codes:
            rules.deductible = amount
        elif "copaypct" in codes and amount <= 100:
            rules.coinsurance = amount
    return rules


async def plan_rules(*, repo: Repository, settings: Settings, coverage: Resource) -> PlanRules:
    rules = rules_from_coverage(coverage)
    plan_ids = [c.get("value") for c in coverage.get("class") or []
                if any(t.get("code") == "plan" and t.get("system") in (None, COVERAGE_CLASS)
                       for t in (c.get("type") or {}).get("coding") or [])]
    if not plan_ids:
        return rules
    plans = await svc.find_resources(repo=repo, settings=settings, type_="InsurancePlan",
                                     criteria=[("identifier", search_token(None, str(plan_ids[0]))),
                                               ("status", "active")], limit=2)
    if not plans:
        return rules
    for plan in plans[0].get("plan") or []:
        for general in plan.get("generalCost") or []:
            codes = set(_codes(general.get("type")))
            cost = _rule_value((general.get("cost") or {}).get("value"))
            if cost is None:
                continue
            if codes & COPAY_CODES:
                rules.copay = cost
            elif "deductible" in codes:
                rules.deductible = cost
        for specific in plan.get("specificCost") or []:
            item = ItemRule()
            for benefit in specific.get("benefit") or []:
                for cost in benefit.get("cost") or []:
                    codes = set(_codes(cost.get("type")))
                    value = _rule_value((cost.get("value") or {}).get("value"))
                    if "notcovered" in codes:
                        item.covered = False
                    elif "coinsurance" in codes and value is not None and value <= 100:
                        item.coinsurance = value
                    elif codes & COPAY_CODES and value is not None:
                        item.copay = value
            for coding in (specific.get("category") or {}).get("coding") or []:
                rules.items[(coding.get("system"), str(coding.get("code")))] = item
    return rules


async def deductible_met(*, repo: Repository, settings: Settings, member: Member,
                         year: int) -> Decimal:
    """Deductible already applied by earlier adjudications of this member Coverage for
    services in the same calendar year (the year of each claim's date of service)."""
    coverage = member.coverage or {}
    patient = (coverage.get("beneficiary") or {}).get("reference")
    if not isinstance(patient, str) or member.reference is None:
        return ZERO
    responses = await svc.find_resources(
        repo=repo, settings=settings, type_="ClaimResponse",
        criteria=[("patient", patient), ("outcome", ClaimOutcome.COMPLETE.value)], limit=100_000)
    met = ZERO
    for response in responses:
        coverages = {(i.get("coverage") or {}).get("reference")
                     for i in response.get("insurance") or []}
        if member.reference not in coverages:
            continue
        claim = await read_local(repo, (response.get("request") or {}).get("reference"))
        if claim is None or claim_service_date(claim, fallback=date.min).year != year:
            continue
        met += deductible_taken(response)
    return met


def deductible_taken(response: Resource | None) -> Decimal:
    """The deductible an answer applied (its ``deductible`` total)."""
    taken = ZERO
    for total in (response or {}).get("total") or []:
        if any(c.get("code") == "deductible" for c in (total.get("category") or {}).get(
                "coding") or []):
            taken += decimal_of((total.get("amount") or {}).get("value", 0))
    return taken


def _adjudication(code: str, *, amount: Decimal | None = None, value: Decimal | None = None,
                  currency: str) -> dict[str, Any]:
    out: dict[str, Any] = {"category": {"coding": [{"system": ADJUDICATION, "code": code}]}}
    if amount is not None:
        out["amount"] = money(amount, currency)
    if value is not None:
        out["value"] = value
    return out


@dataclass
class Adjudicated:
    items: list[dict[str, Any]]
    totals: list[dict[str, Any]]
    benefit: Decimal


@dataclass(frozen=True)
class Split:
    """How one item's amount divides between the member and the payer."""

    submitted: Decimal
    eligible: Decimal
    copay: Decimal
    deductible: Decimal
    coinsurance_pct: Decimal  # the member's percentage of what remains
    benefit: Decimal


@dataclass
class Allowance:
    """What is left to take from the member over a claim: the claim's copay (unless an
    item's rule sets its own) and the year's deductible."""

    copay: Decimal
    deductible: Decimal
    # What the earlier payers left of the claim (None: this payer is the first): a payer
    # after another pays at most that, item by item (traditional coordination of benefits).
    unpaid: Decimal | None = None


def split_item(item: dict[str, Any], rules: PlanRules, left: Allowance) -> Split:
    """The item's split; ``left`` is reduced by the copay and deductible it takes."""
    coding = ((item.get("productOrService") or {}).get("coding") or [{}])[0]
    rule = rules.for_item(coding)
    submitted = item_amount(item)
    eligible = submitted if rule.covered else ZERO
    if rule.copay is not None:
        copay = min(eligible, rule.copay)
    else:
        copay = min(eligible, left.copay)
        left.copay -= copay
    deductible = min(eligible - copay, left.deductible)
    left.deductible -= deductible
    pct = rule.coinsurance if rule.coinsurance is not None else rules.coinsurance
    coinsurance = cents((eligible - copay - deductible) * pct / 100)
    benefit = eligible - copay - deductible - coinsurance
    if left.unpaid is not None:
        benefit = min(benefit, left.unpaid)
        left.unpaid -= benefit
    return Split(submitted=submitted, eligible=eligible, copay=copay, deductible=deductible,
                 coinsurance_pct=pct, benefit=benefit)


def _entries(split: Split, currency: str) -> list[dict[str, Any]]:
    entries = [_adjudication("submitted", amount=split.submitted, currency=currency),
               _adjudication("copay", amount=split.copay, currency=currency),
               _adjudication("eligible", amount=split.eligible, currency=currency),
               _adjudication("deductible", amount=split.deductible, currency=currency)]
    if split.coinsurance_pct:
        entries.append(_adjudication("eligpercent", value=Decimal(100) - split.coinsurance_pct,
                                     currency=currency))
    entries.append(_adjudication("benefit", amount=split.benefit, currency=currency))
    return entries


def adjudicate(claim: Resource, rules: PlanRules, *, deductible_left: Decimal,
               currency: str, unpaid: Decimal | None = None) -> Adjudicated:
    """The claim's items adjudicated in sequence order, their totals and the payment
    (``unpaid``: what the earlier payers left of the claim, when this payer is not the
    first)."""
    left = Allowance(copay=rules.copay, deductible=deductible_left, unpaid=unpaid)
    totals: dict[str, Decimal] = {}
    items: list[dict[str, Any]] = []
    for item in sorted(claim.get("item") or [], key=lambda i: int(i.get("sequence", 0))):
        split = split_item(item, rules, left)
        for code, amount in (("submitted", split.submitted), ("copay", split.copay),
                             ("eligible", split.eligible), ("deductible", split.deductible),
                             ("benefit", split.benefit)):
            totals[code] = totals.get(code, ZERO) + amount
        items.append({"itemSequence": int(item.get("sequence", len(items) + 1)),
                      "adjudication": _entries(split, currency)})
    return Adjudicated(items=items,
                       totals=[_adjudication(code, amount=amount, currency=currency)
                               for code, amount in totals.items()],
                       benefit=totals.get("benefit", ZERO))
