"""An 835 claim payment (CLP loop) as the claim's ClaimResponse, and 835 helpers.

Per ``CLP``: ``outcome`` complete, ``disposition`` from CLP02, the payer's claim number
(CLP07) as an identifier, ``payment`` (CLP04, the BPR16 date, the TRN02 trace), ``total``
submitted (CLP03), benefit (CLP04), the CAS amounts per group code (category in X12's
claim adjustment group codes: CO, PR, OA, PI, CR) and the patient responsibility
(CLP05); claim-level ``CAS`` as ``adjudication``. A later payer's CARC 23 adjustments (the
earlier payers' part) are totalled apart (``prior-payers``), not in their group, so that
the Invoice does not count them twice. A reversal (CLP02 22) is netted with the
adjudication it reverses: the claim's answer is the pair's sums, ``queued`` until the
payer's corrected payment (a later CLP) comes. Per ``SVC``: an ``item`` (matched to the
Claim's item by ``REF*6R``, which the 837P sent as the item's sequence, else by procedure
code) with submitted (SVC02), eligible (AMT*B6 allowed), benefit (SVC03) and each CAS
adjustment (category: its group code, reason: its CARC).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server.adapters.x12.remittance import ZERO, Adjustment, ClaimPayment, Remittance, ServicePayment
from fhir_server.core.money import decimal_of, money
from fhir_server.operations.common import now_instant
from fhir_server.revenue.coverage import focal_coverage_ref
from fhir_server.revenue.denials import reason_coding, remark_note
from fhir_server.revenue.records import Resource
from fhir_server.revenue.states import ClaimOutcome
from fhir_server.terminology.systems import (
    ADJUDICATION,
    PAYER_CLAIM_NUMBER,
    PAYMENT_TYPE,
    SERVER_URI,
    X12_CAS_GROUP,
)

CLAIM_STATUS = {"1": "Processed as primary", "2": "Processed as secondary",
                "3": "Processed as tertiary", "4": "Denied",
                "19": "Processed as primary, forwarded to additional payer(s)",
                "20": "Processed as secondary, forwarded to additional payer(s)",
                "21": "Processed as tertiary, forwarded to additional payer(s)",
                "22": "Reversal of previous payment", "23": "Not our claim, forwarded"}
RESPONSIBILITY = f"{SERVER_URI}/CodeSystem/adjudication"
# CARC 23, "the impact of prior payer(s) adjudication including payments and/or
# adjustments": what the earlier payers paid and adjusted off, which the Invoice counted
# when their answers came. A later payer's 835 reports it; it is not this payer's.
PRIOR_PAYERS = "23"
REVERSAL = "22"  # CLP02: reversal of previous payment


def x12_date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}"


def _category(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _adjudications(adjustments: list[Adjustment], currency: str) -> list[dict[str, Any]]:
    return [{"category": _category(X12_CAS_GROUP, a.group),
             "reason": {"coding": [reason_coding(a.reason)]},
             "amount": money(a.amount, currency)} for a in adjustments]


def _item_sequence(service: ServicePayment, claim: Resource, n: int, used: set[int]) -> int:
    items = [i for i in claim.get("item") or [] if isinstance(i, dict)]
    sequences = {int(i.get("sequence", 0)) for i in items}
    if service.line and service.line.isdigit() and int(service.line) in sequences:
        return int(service.line)
    for item in items:
        codes = [c.get("code") for c in (item.get("productOrService") or {}).get("coding") or []]
        if service.code in codes and int(item.get("sequence", 0)) not in used:
            return int(item.get("sequence", 0))
    return n + 1


def claim_response(*, payment: ClaimPayment, remittance: Remittance, claim: Resource,
                   id_: str, payer_ref: str, currency: str,
                   previous: Resource | None = None) -> Resource:
    """The claim's ClaimResponse after ``payment``: its adjudication, or, for a reversal
    (CLP02 22), the adjudication it reverses (``previous``) netted with it."""
    response = _adjudicated(payment=payment, remittance=remittance, claim=claim, id_=id_,
                            payer_ref=payer_ref, currency=currency)
    if payment.status == REVERSAL and previous is not None:
        return _netted(response, previous, currency)
    return response


def _adjudicated(*, payment: ClaimPayment, remittance: Remittance, claim: Resource,
                 id_: str, payer_ref: str, currency: str) -> Resource:
    items: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    used: set[int] = set()
    for n, service in enumerate(payment.services):
        sequence = _item_sequence(service, claim, n, used)
        used.add(sequence)
        entries = [{"category": _category(ADJUDICATION, "submitted"),
                    "amount": money(service.charge, currency)}]
        if service.allowed is not None:
            entries.append({"category": _category(ADJUDICATION, "eligible"),
                            "amount": money(service.allowed, currency)})
        entries.append({"category": _category(ADJUDICATION, "benefit"),
                        "amount": money(service.paid, currency)})
        item: dict[str, Any] = {"itemSequence": sequence, "adjudication": [
            *entries, *_adjudications(service.adjustments, currency)]}
        if service.remarks:  # LQ*HE: as notes the line names
            item["noteNumber"] = [len(notes) + n for n in range(1, len(service.remarks) + 1)]
            notes += [{"number": len(notes) + 1, "type": "display", "text": remark_note(code)}
                      for code in service.remarks]
        items.append(item)
    groups: dict[str, Decimal] = {}
    prior = ZERO
    for adjustment in payment.all_adjustments():
        if adjustment.reason == PRIOR_PAYERS:
            prior += adjustment.amount
            continue
        groups[adjustment.group] = groups.get(adjustment.group, ZERO) + adjustment.amount
    totals = [{"category": _category(ADJUDICATION, "submitted"),
               "amount": money(payment.charge, currency)},
              {"category": _category(ADJUDICATION, "benefit"), "amount": money(payment.paid,
                                                                                   currency)},
              *({"category": _category(X12_CAS_GROUP, group), "amount": money(amount, currency)}
                for group, amount in sorted(groups.items())),
              {"category": _category(RESPONSIBILITY, "patient-responsibility"),
               "amount": money(payment.patient_responsibility, currency)},
              *([{"category": _category(RESPONSIBILITY, "prior-payers"),
                  "amount": money(prior, currency)}] if prior else [])]
    coverage = focal_coverage_ref(claim)
    response: Resource = {
        "resourceType": "ClaimResponse", "id": id_, "status": "active", "type": claim["type"],
        "use": claim.get("use", "claim"), "patient": claim["patient"], "created": now_instant(),
        "insurer": {"reference": payer_ref}, "request": {"reference": f"Claim/{claim['id']}"},
        "outcome": ClaimOutcome.COMPLETE.value,
        "disposition": CLAIM_STATUS.get(payment.status, f"Claim status {payment.status[:4]}"),
        "total": totals,
        "payment": {"type": {"coding": [{"system": PAYMENT_TYPE, "code": "complete"}]},
                    "date": x12_date(remittance.paid_on), "amount": money(payment.paid, currency),
                    "identifier": {"system": f"{SERVER_URI}/x12-trace", "value": remittance.trace}},
    }
    if payment.payer_claim:
        response["identifier"] = [{"system": PAYER_CLAIM_NUMBER, "value": payment.payer_claim}]
    if claim.get("provider"):
        response["requestor"] = claim["provider"]
    if coverage:
        response["insurance"] = [{"sequence": 1, "focal": True, "coverage": coverage}]
    if items:
        response["item"] = items
    if notes:
        response["processNote"] = notes
    if payment.adjustments:
        response["adjudication"] = _adjudications(payment.adjustments, currency)
    return response


def _category_key(entry: dict[str, Any]) -> tuple[str, str]:
    coding = ((entry.get("category") or {}).get("coding") or [{}])[0]
    return str(coding.get("system", "")), str(coding.get("code", ""))


def _netted(reversal: Resource, previous: Resource, currency: str) -> Resource:
    """A reversal and the adjudication it reverses, as a pair: the sums of their totals and
    payments (zero for a whole reversal), ``queued`` (the payer's corrected adjudication,
    when it comes, is the claim's answer), no lines. What the Invoice counted of the
    reversed adjudication comes off it (``balances.response_share`` counts nothing of an
    answer that is not complete)."""
    sums: dict[tuple[str, str], Decimal] = {}
    for entry in [*(previous.get("total") or []), *(reversal.get("total") or [])]:
        key = _category_key(entry)
        sums[key] = sums.get(key, ZERO) + decimal_of((entry.get("amount") or {}).get("value", 0))
    paid = sum((decimal_of(((r.get("payment") or {}).get("amount") or {}).get("value", 0))
                for r in (previous, reversal)), ZERO)
    out = {k: v for k, v in reversal.items() if k not in ("item", "adjudication")}
    out.update(
        outcome=ClaimOutcome.QUEUED.value,
        disposition=f"{CLAIM_STATUS[REVERSAL]}: netted with the payment it reverses; waiting "
                    "for the payer's corrected adjudication",
        total=[{"category": _category(system, code), "amount": money(amount, currency)}
               for (system, code), amount in sums.items()],
        payment={**reversal["payment"], "amount": money(paid, currency)})
    return out
