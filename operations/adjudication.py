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

Per item: ``submitted`` is its net; ``eligible`` is the submitted amount (0 when not
covered); the copay, then what remains of the year's deductible (less what earlier
claims on this Coverage already applied), then coinsurance come off; the rest is the
``benefit`` the payer pays. ``payment.amount`` is the sum of the benefits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fhir_server import interactions as svc
from fhir_server.config import Settings
from fhir_server.storage.repository import Repository
from operations.common import CENT, Resource, decimal_of, money
from terminology.systems import ADJUDICATION, COPAY_TYPE, COVERAGE_CLASS

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


def rules_from_coverage(coverage: Resource) -> PlanRules:
    rules = PlanRules()
    for cost in coverage.get("costToBeneficiary") or []:
        codes = set(_codes(cost.get("type")))
        value = cost.get("valueMoney") or cost.get("valueQuantity") or {}
        if value.get("value") is None:
            continue
        amount = decimal_of(value["value"])
        if codes & COPAY_CODES and rules.copay == ZERO:
            rules.copay = amount
        elif "deductible" in codes:
            rules.deductible = amount
        elif "copaypct" in codes:
            rules.coinsurance = amount
    return rules


async def plan_rules(repo: Repository, settings: Settings, coverage: Resource) -> PlanRules:
    rules = rules_from_coverage(coverage)
    plan_ids = [c.get("value") for c in coverage.get("class") or []
                if any(t.get("code") == "plan" and t.get("system") in (None, COVERAGE_CLASS)
                       for t in (c.get("type") or {}).get("coding") or [])]
    if not plan_ids:
        return rules
    plans = await svc.find_resources(repo=repo, settings=settings, type_="InsurancePlan",
                                     criteria=[("identifier", str(plan_ids[0]).replace(",", "\\,")),
                                               ("status", "active")], limit=2)
    if not plans:
        return rules
    for plan in plans[0].get("plan") or []:
        for general in plan.get("generalCost") or []:
            codes = set(_codes(general.get("type")))
            cost = (general.get("cost") or {}).get("value")
            if cost is None:
                continue
            if codes & COPAY_CODES:
                rules.copay = decimal_of(cost)
            elif "deductible" in codes:
                rules.deductible = decimal_of(cost)
        for specific in plan.get("specificCost") or []:
            item = ItemRule()
            for benefit in specific.get("benefit") or []:
                for cost in benefit.get("cost") or []:
                    codes = set(_codes(cost.get("type")))
                    value = (cost.get("value") or {}).get("value")
                    if "notcovered" in codes:
                        item.covered = False
                    elif "coinsurance" in codes and value is not None:
                        item.coinsurance = decimal_of(value)
                    elif codes & COPAY_CODES and value is not None:
                        item.copay = decimal_of(value)
            for coding in (specific.get("category") or {}).get("coding") or []:
                rules.items[(coding.get("system"), str(coding.get("code")))] = item
    return rules


async def deductible_met(repo: Repository, settings: Settings, coverage_ref: str,
                         insurer_ref: str | None, year: int) -> Decimal:
    """Deductible already applied this year by earlier adjudications of this Coverage."""
    if insurer_ref is None:
        return ZERO
    responses = await svc.find_resources(
        repo=repo, settings=settings, type_="ClaimResponse",
        criteria=[("insurer", insurer_ref), ("outcome", "complete"),
                  ("created", f"ge{year}-01-01"), ("created", f"lt{year + 1}-01-01")],
        limit=100_000)
    met = ZERO
    for response in responses:
        coverages = {(i.get("coverage") or {}).get("reference") for i in response.get("insurance")
                     or []}
        if coverage_ref not in coverages:
            continue
        for total in response.get("total") or []:
            if any(c.get("code") == "deductible" for c in (total.get("category") or {}).get(
                    "coding") or []):
                met += decimal_of((total.get("amount") or {}).get("value", 0))
    return met


def _adjudication(code: str, *, amount: Decimal | None = None, value: Decimal | None = None,
                  currency: str) -> dict[str, Any]:
    out: dict[str, Any] = {"category": {"coding": [{"system": ADJUDICATION, "code": code}]}}
    if amount is not None:
        out["amount"] = money(amount, currency)
    if value is not None:
        out["value"] = value
    return out


def item_submitted(item: dict[str, Any]) -> Decimal:
    if (item.get("net") or {}).get("value") is not None:
        return decimal_of(item["net"]["value"])
    unit = decimal_of((item.get("unitPrice") or {}).get("value", 0))
    quantity = decimal_of((item.get("quantity") or {}).get("value", 1))
    factor = decimal_of(item.get("factor", 1))
    return unit * quantity * factor


@dataclass
class Adjudicated:
    items: list[dict[str, Any]]
    totals: list[dict[str, Any]]
    benefit: Decimal


def adjudicate(claim: Resource, rules: PlanRules, *, deductible_left: Decimal,
               currency: str) -> Adjudicated:
    copay_left = rules.copay
    totals: dict[str, Decimal] = {}
    items: list[dict[str, Any]] = []
    for item in sorted(claim.get("item") or [], key=lambda i: int(i.get("sequence", 0))):
        coding = ((item.get("productOrService") or {}).get("coding") or [{}])[0]
        rule = rules.for_item(coding)
        submitted = item_submitted(item).quantize(CENT)
        eligible = submitted if rule.covered else ZERO
        if rule.copay is not None:
            copay = min(eligible, rule.copay)
        else:
            copay = min(eligible, copay_left)
            copay_left -= copay
        deductible = min(eligible - copay, deductible_left)
        deductible_left -= deductible
        pct = rule.coinsurance if rule.coinsurance is not None else rules.coinsurance
        coinsurance = ((eligible - copay - deductible) * pct / 100).quantize(CENT)
        benefit = eligible - copay - deductible - coinsurance
        entries = [_adjudication("submitted", amount=submitted, currency=currency),
                   _adjudication("copay", amount=copay, currency=currency),
                   _adjudication("eligible", amount=eligible, currency=currency),
                   _adjudication("deductible", amount=deductible, currency=currency)]
        if pct:
            entries.append(_adjudication("eligpercent", value=Decimal(100) - pct,
                                         currency=currency))
        entries.append(_adjudication("benefit", amount=benefit, currency=currency))
        for code, amount in (("submitted", submitted), ("copay", copay), ("eligible", eligible),
                             ("deductible", deductible), ("benefit", benefit)):
            totals[code] = totals.get(code, ZERO) + amount
        items.append({"itemSequence": int(item.get("sequence", len(items) + 1)),
                      "adjudication": entries})
    return Adjudicated(items=items,
                       totals=[_adjudication(code, amount=amount, currency=currency)
                               for code, amount in totals.items()],
                       benefit=totals.get("benefit", ZERO))

