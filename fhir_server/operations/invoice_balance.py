"""An Invoice's balance: what the insurer pays, what was adjusted off, what the patient paid,
and what is still owed, kept as ``informational`` ``totalPriceComponent``s with the codes of
``https://fhir-rcm-server.org/CodeSystem/invoice-share``:

* ``insurer`` (Insurer pays): the adjudicated payment of the bill's claim (this server as
  payer, a FHIR payer, or an 835), plus insurer payments recorded by hand;
* ``adjustment`` (Adjusted): what the payer's remittance wrote off (CAS groups other than
  PR: contractual, other, payer-initiated, correction);
* ``patient-paid`` (Patient paid): payments recorded for the patient;
* ``patient`` (Patient owes): ``totalGross`` - the three above, never below zero;
* ``credit`` (Credit): what was paid beyond the total, present only when there is some.

The first three are running totals: each payment, adjudication or remittance posts its
change (``Posting``); an adjudication that replaces an earlier one for the same claim posts
the difference. The Invoice becomes ``balanced`` when nothing is owed and ``issued`` again
when something is. The caller writes the new Invoice in the same commit as the payment,
ClaimResponse or remittance it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_server.core.errors import Unprocessable
from fhir_server.core.money import decimal_of, money
from fhir_server.operations.adjudication import item_submitted
from fhir_server.operations.common import LOCAL_REF, Resource, drop_ids
from fhir_server.service import interactions as svc
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import BILL_INVOICE, INVOICE_SHARE, X12_CAS_GROUP

ZERO = Decimal(0)
DISPLAY = {"insurer": "Insurer pays", "adjustment": "Adjusted", "patient-paid": "Patient paid",
           "patient": "Patient owes", "credit": "Credit"}
RUNNING = ("insurer", "adjustment", "patient-paid")
OPEN = ("issued", "balanced")


@dataclass
class Posting:
    insurer: Decimal = ZERO
    adjustment: Decimal = ZERO
    patient_paid: Decimal = ZERO


def response_share(response: Resource | None) -> tuple[Decimal, Decimal]:
    """(what the insurer pays, what it adjusted off) according to a ClaimResponse."""
    if not response or response.get("outcome") != "complete":
        return ZERO, ZERO
    paid = decimal_of(((response.get("payment") or {}).get("amount") or {}).get("value", 0))
    adjusted = ZERO
    for total in response.get("total") or []:
        codes = [c.get("code") for c in (total.get("category") or {}).get("coding") or []
                 if c.get("system") == X12_CAS_GROUP]
        if codes and codes[0] != "PR":
            adjusted += decimal_of((total.get("amount") or {}).get("value", 0))
    return paid, adjusted


def adjudication_posting(new: Resource, previous: Resource | None) -> Posting:
    paid, adjusted = response_share(new)
    was_paid, was_adjusted = response_share(previous)
    return Posting(insurer=paid - was_paid, adjustment=adjusted - was_adjusted)


def _code(component: dict[str, Any]) -> str | None:
    return next((c.get("code") for c in (component.get("code") or {}).get("coding") or []
                 if c.get("system") == INVOICE_SHARE), None)


def shares(invoice: Resource) -> dict[str, Decimal]:
    """The Invoice's share components by code (absent: zero)."""
    out = dict.fromkeys(DISPLAY, ZERO)
    for component in invoice.get("totalPriceComponent") or []:
        code = _code(component)
        if code in out:
            out[code] = decimal_of((component.get("amount") or {}).get("value", 0))
    return out


def post(invoice: Resource, posting: Posting, currency: str) -> Resource:
    """The Invoice (its id kept, meta dropped) after a posting."""
    now = shares(invoice)
    running = {"insurer": now["insurer"] + posting.insurer,
               "adjustment": now["adjustment"] + posting.adjustment,
               "patient-paid": now["patient-paid"] + posting.patient_paid}
    gross = decimal_of((invoice.get("totalGross") or {}).get("value", 0))
    owed = gross - sum(running.values(), ZERO)
    values = {**running, "patient": max(owed, ZERO), "credit": max(-owed, ZERO)}
    kept = [c for c in invoice.get("totalPriceComponent") or [] if _code(c) is None]
    components = [{"type": "informational",
                   "code": {"coding": [{"system": INVOICE_SHARE, "code": code,
                                        "display": DISPLAY[code]}]},
                   "amount": money(amount, currency)}
                  for code, amount in values.items() if code != "credit" or amount > 0]
    return {**drop_ids(invoice), "id": invoice["id"], "totalPriceComponent": [*kept, *components],
            "status": "balanced" if owed <= 0 else "issued"}


async def bill_of(repo: Repository, claim: Resource) -> tuple[Resource, int] | None:
    """The open Invoice a Claim bills (None: no bill to settle).

    It is the one the Claim names with ``urn:fhir-rcm-server:invoice``, and only when it is
    that patient's, issued (or balanced), and billed the Claim's total.
    """
    invoice_ref = next((i.get("value") for i in claim.get("identifier") or []
                        if i.get("system") == BILL_INVOICE), None)
    match = LOCAL_REF.match(invoice_ref) if isinstance(invoice_ref, str) else None
    if match is None or match.group(1) != "Invoice":
        return None
    version, invoice = await svc.current_resource(repo, "Invoice", match.group(2))
    if invoice is None or version is None or invoice.get("status") not in OPEN:
        return None
    if (invoice.get("subject") or {}).get("reference") != (claim.get("patient") or {}).get(
            "reference"):
        return None
    gross = decimal_of((invoice.get("totalGross") or {}).get("value", 0))
    if decimal_of((claim.get("total") or {}).get("value", gross)) != gross:
        return None
    try:
        claimed = sum((item_submitted(i) for i in claim.get("item") or []), ZERO)
    except Unprocessable:
        return None
    if claimed != gross:
        return None  # a claim for more (or less) than was billed settles nothing
    return invoice, version


def currency_of(invoice: Resource, default: str) -> str:
    return str((invoice.get("totalGross") or {}).get("currency", default))
