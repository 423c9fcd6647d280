"""This server as the payer answering a CoverageEligibilityRequest: whether the member's
Coverage is in force on the service date and, when benefits were asked for, its
``costToBeneficiary`` as benefits. Nothing is written here."""

from __future__ import annotations

from datetime import date
from typing import Any

from fhir_server.core.errors import Unprocessable
from fhir_server.core.money import decimal_of, money
from fhir_server.revenue.coverage import in_force
from fhir_server.revenue.payer.members import (
    Member,
    beneficiary_ref,
    coverage_ref,
    error_code,
    logical_ref,
)
from fhir_server.revenue.records import Resource, ref
from fhir_server.storage.model import instant, now_ms
from fhir_server.terminology.systems import BENEFIT_CATEGORY, BENEFIT_TYPE, COPAY_TYPE

DEFAULT_PURPOSE = ["validation", "benefits"]
# Coverage.costToBeneficiary.type -> benefit-type of the answer's insurance.item.benefit.
BENEFIT_OF_COST = {"gpvisit": "copay", "spvisit": "copay", "emergency": "copay",
                   "inpthosp": "copay", "televisit": "copay", "urgentcare": "copay",
                   "copay": "copay", "copaypct": "copay-percent", "deductible": "deductible",
                   "maxoutofpocket": "copay-maximum"}
NETWORK = "http://terminology.hl7.org/CodeSystem/benefit-network"


def eligibility_answer(*, request: Resource, request_ref: str, member: Member,
                       submitted_coverage: Resource | None, on: date,
                       currency: str) -> Resource:
    """The CoverageEligibilityResponse (no id yet) for ``request`` about the day ``on``."""
    response: Resource = {
        "resourceType": "CoverageEligibilityResponse", "status": "active",
        "purpose": request.get("purpose") or DEFAULT_PURPOSE,
        "patient": beneficiary_ref(member, request.get("patient")),
        "servicedDate": on.isoformat(), "created": instant(now_ms()),
        "request": {"reference": request_ref}, "outcome": "complete",
        "insurer": ref(member.payer) if member.payer
        else logical_ref(request.get("insurer"), "Payer"),
    }
    if member.coverage is None:
        response["disposition"] = "Member not found"
        response["insurance"] = [{"coverage": coverage_ref(member, submitted_coverage),
                                  "inforce": False}]
        response["error"] = [error_code("member-not-found", "Member not found")]
        return response
    inforce = in_force(member.coverage, on)
    entry: dict[str, Any] = {"coverage": coverage_ref(member, submitted_coverage),
                             "inforce": inforce}
    if member.coverage.get("period"):
        entry["benefitPeriod"] = member.coverage["period"]
    if inforce and "benefits" in response["purpose"]:
        items = benefit_items(member.coverage, currency)
        if items:
            entry["item"] = items
    response["insurance"] = [entry]
    response["disposition"] = ("Policy is in force" if inforce
                               else "Policy is not in force on the service date")
    return response


def benefit_items(coverage: Resource, currency: str) -> list[dict[str, Any]]:
    """The Coverage's costToBeneficiary as benefits (entries this server cannot read are left
    out: they are the payer's data, not the requester's mistake)."""
    items = []
    for cost in coverage.get("costToBeneficiary") or []:
        codes = [c.get("code") for c in (cost.get("type") or {}).get("coding") or []
                 if c.get("system") in (None, COPAY_TYPE)]
        kind = next((BENEFIT_OF_COST[c] for c in codes if c in BENEFIT_OF_COST), None)
        value = (cost.get("valueMoney") or cost.get("valueQuantity") or {}).get("value")
        try:
            amount = decimal_of(value)
        except Unprocessable:
            continue
        if kind is None or amount < 0 or (kind == "copay-percent" and amount > 100):
            continue
        benefit: dict[str, Any] = {"type": {"coding": [{"system": BENEFIT_TYPE, "code": kind}]}}
        if "valueMoney" in cost:
            benefit["allowedMoney"] = money(amount, cost["valueMoney"].get("currency", currency))
        elif amount == amount.to_integral_value():
            benefit["allowedUnsignedInt"] = int(amount)
        else:
            benefit["allowedString"] = f"{amount}%"
        items.append({
            "category": {"coding": [{"system": BENEFIT_CATEGORY, "code": "30",
                                     "display": "Health Benefit Plan Coverage"}]},
            "name": codes[0] if codes else kind,
            "network": {"coding": [{"system": NETWORK, "code": "in"}]},
            "benefit": [benefit]})
    return items
