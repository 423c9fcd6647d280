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
the difference. ``post`` moves the Invoice to ``balanced`` when nothing is owed and back to
``issued`` when something is (``revenue/states.py``). Pure arithmetic: the caller writes the
new Invoice in the same commit as the payment, ClaimResponse or remittance it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_server.core.money import decimal_of, money
from fhir_server.revenue.states import (
    OPEN_INVOICES,
    ClaimOutcome,
    InvoiceStatus,
    TransitionRefused,
    claim_outcome,
    invoice_status,
    transition,
)
from fhir_server.terminology.systems import INVOICE_SHARE, X12_CAS_GROUP

Resource = dict[str, Any]
ZERO = Decimal(0)
DISPLAY = {"insurer": "Insurer pays", "adjustment": "Adjusted", "patient-paid": "Patient paid",
           "patient": "Patient owes", "credit": "Credit"}


@dataclass
class Posting:
    insurer: Decimal = ZERO
    adjustment: Decimal = ZERO
    patient_paid: Decimal = ZERO


def response_share(response: Resource | None) -> tuple[Decimal, Decimal]:
    """(what the insurer pays, what it adjusted off) according to a ClaimResponse."""
    if claim_outcome(response) is not ClaimOutcome.COMPLETE:
        return ZERO, ZERO
    assert response is not None
    paid = decimal_of(((response.get("payment") or {}).get("amount") or {}).get("value", 0))
    adjusted = ZERO
    for total in response.get("total") or []:
        codes = [c.get("code") for c in (total.get("category") or {}).get("coding") or []
                 if c.get("system") == X12_CAS_GROUP]
        if codes and codes[0] != "PR":
            adjusted += decimal_of((total.get("amount") or {}).get("value", 0))
    return paid, adjusted


def adjudication_posting(new: Resource, previous: Resource | None) -> Posting:
    """What a (new or replacing) adjudication changes: the difference from the previous."""
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


def balance(invoice: Resource, posting: Posting) -> dict[str, Decimal]:
    """The five shares after a posting (``patient`` owed and ``credit`` never below zero)."""
    now = shares(invoice)
    running = {"insurer": now["insurer"] + posting.insurer,
               "adjustment": now["adjustment"] + posting.adjustment,
               "patient-paid": now["patient-paid"] + posting.patient_paid}
    gross = decimal_of((invoice.get("totalGross") or {}).get("value", 0))
    owed = gross - sum(running.values(), ZERO)
    return {**running, "patient": max(owed, ZERO), "credit": max(-owed, ZERO)}


def post(invoice: Resource, posting: Posting, currency: str) -> Resource:
    """The Invoice (its id kept, meta dropped) after a posting: its shares, and its status
    ``balanced`` when nothing is owed, else ``issued``."""
    values = balance(invoice, posting)
    kept = [c for c in invoice.get("totalPriceComponent") or [] if _code(c) is None]
    components = [{"type": "informational",
                   "code": {"coding": [{"system": INVOICE_SHARE, "code": code,
                                        "display": DISPLAY[code]}]},
                   "amount": money(amount, currency)}
                  for code, amount in values.items() if code != "credit" or amount > 0]
    settled = InvoiceStatus.ISSUED if values["patient"] > 0 else InvoiceStatus.BALANCED
    if invoice_status(invoice) not in OPEN_INVOICES:  # a draft is no bill yet: no postings
        raise TransitionRefused("Invoice", invoice.get("status"), settled.value)
    content = {k: v for k, v in invoice.items() if k not in ("id", "meta")}
    return {**content, "id": invoice["id"], "totalPriceComponent": [*kept, *components],
            "status": transition("Invoice", invoice.get("status"), settled)}


def currency_of(invoice: Resource, default: str) -> str:
    return str((invoice.get("totalGross") or {}).get("currency", default))
