"""Coordination of benefits after an adjudication: the claim to the next payer, and what
the earlier payers settled.

A bill's Claim lists every Coverage that pays for the visit in ``insurance``, by
``sequence``, with ``focal`` on the one billed (``coverage.claim_insurance`` chose them:
in force on the service date, each with an ``order`` of its own). When the focal payer's
adjudication is complete and something is left of the claim's total, the next Coverage in
sequence is billed for it: a new Claim (``next_payer_claim``) with

* the same items, total, patient, provider and bill identifiers (so its answer posts to
  the same Invoice, ``billing.bill_of``);
* ``insurance`` unchanged but for ``focal``, now on the next Coverage, and the
  ``claimResponse`` of the payer that answered on that payer's entry: every earlier
  payer's answer is named on its own entry;
* ``related`` the claim it follows (relationship ``prior``), and ``insurer`` the next
  Coverage's payor;
* an id derived from the claim it follows, so that the same answer handed twice makes one
  next claim.

What is left is the claim's total less what the earlier payers paid and adjusted off
(``balances.response_share``, the same shares the Invoice counts): the next payer pays at
most that (``left_to_bill``; traditional COB, as this server adjudicates as a payer). The
patient owes what the last payer leaves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from fhir_server.core.money import decimal_of
from fhir_server.revenue.amounts import items_total
from fhir_server.revenue.balances import response_share
from fhir_server.revenue.coverage import focal_insurance
from fhir_server.revenue.records import Resource
from fhir_server.revenue.states import ClaimOutcome, claim_outcome
from fhir_server.terminology.systems import CLAIM_COVERAGE_CHOICE, SERVER_URI

RELATED_CLAIM = "http://terminology.hl7.org/CodeSystem/related-claim-relationship"
ZERO = Decimal(0)


def next_claim_id(claim_id: str) -> str:
    """The id of the claim that follows ``claim_id`` to the next payer (one per claim)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{SERVER_URI}/Claim/{claim_id}/next-payer"))


def _sequence(entry: dict[str, Any]) -> int:
    try:
        return int(entry.get("sequence", 0))
    except (TypeError, ValueError):
        return 0


def next_insurance(claim: Resource) -> dict[str, Any] | None:
    """The insurance entry after the focal one in sequence (None: the focal is the last)."""
    focal = focal_insurance(claim)
    if focal is None:
        return None
    later = [i for i in claim.get("insurance") or [] if isinstance(i, dict)
             and _sequence(i) > _sequence(focal)]
    return min(later, key=_sequence) if later else None


def earlier_insurance(claim: Resource) -> list[dict[str, Any]]:
    """The insurance entries before the focal one that name their payer's answer
    (``claimResponse``), in sequence order: the payers billed before this one."""
    focal = focal_insurance(claim)
    if focal is None:
        return []
    return sorted((i for i in claim.get("insurance") or [] if isinstance(i, dict)
                   and _sequence(i) < _sequence(focal)
                   and isinstance((i.get("claimResponse") or {}).get("reference"), str)),
                  key=_sequence)


def earlier_responses(claim: Resource) -> list[str]:
    """The references of the earlier payers' ClaimResponses the claim names."""
    return [str(i["claimResponse"]["reference"]) for i in earlier_insurance(claim)]


def claim_total(claim: Resource) -> Decimal:
    """The claim's ``total``, else what its items bill."""
    total = (claim.get("total") or {}).get("value")
    return decimal_of(total, "Claim.total") if total is not None else items_total(
        claim.get("item") or [])


def left_to_bill(claim: Resource, responses: Iterable[Resource]) -> Decimal:
    """The claim's total less what the payers that answered paid and adjusted off."""
    settled = ZERO
    for response in responses:
        paid, adjusted = response_share(response)
        settled += paid + adjusted
    return max(claim_total(claim) - settled, ZERO)


def next_payer_claim(claim: Resource, response: Resource, *, earlier: Iterable[Resource],
                     payor: dict[str, Any] | None, created: str) -> Resource | None:
    """The claim for what ``response`` (the focal payer's answer to ``claim``) and the
    ``earlier`` payers' answers left, to the next Coverage (whose first ``payor`` is
    ``payor``); None when the answer is not complete, no Coverage follows, or nothing is
    left."""
    if claim_outcome(response) is not ClaimOutcome.COMPLETE:
        return None
    following, focal = next_insurance(claim), focal_insurance(claim)
    if following is None or focal is None:
        return None
    if left_to_bill(claim, [*earlier, response]) <= ZERO:
        return None
    insurance = []
    for entry in claim.get("insurance") or []:
        moved = {**entry, "focal": entry is following}
        if entry is focal:
            moved["claimResponse"] = {"reference": f"ClaimResponse/{response['id']}"}
        insurance.append(moved)
    coverage = str((following.get("coverage") or {}).get("reference", ""))[:73]
    why = (f"billed to {coverage} after ClaimResponse/{str(response['id'])[:64]} of the "
           f"payer before it, for what it left")
    extensions = [e for e in claim.get("extension") or [] if e.get("url") != CLAIM_COVERAGE_CHOICE]
    choice = next((str(e.get("valueString", "")) for e in claim.get("extension") or []
                   if e.get("url") == CLAIM_COVERAGE_CHOICE), "")
    out: Resource = {k: v for k, v in claim.items()
                     if k not in ("id", "meta", "insurer", "related", "extension", "text")}
    out.update({
        "id": next_claim_id(str(claim["id"])),
        "extension": [*extensions, {"url": CLAIM_COVERAGE_CHOICE,
                                    "valueString": f"{choice}; {why}" if choice else why}],
        "created": created,
        "insurance": insurance,
        "related": [{"claim": {"reference": f"Claim/{claim['id']}"},
                     "relationship": {"coding": [{"system": RELATED_CLAIM, "code": "prior",
                                                  "display": "Prior Claim"}]}}],
    })
    if payor is not None:
        out["insurer"] = payor
    return out

