"""Insurer payments recorded by hand that a later 835 reports too: matched, not counted twice.

A billing office that gets a payer's paper EOB (or sees the deposit) before the 835 records
the payment with ``Invoice/[id]/$record-payment`` and ``payer`` the insurer Organization
(``record_payment.py``): it adds to the Invoice's ``insurer`` share. When the payer's 835
then posts its adjudication of the bill's claim, the hand-recorded payments of that payer
on that Invoice not matched yet are that same money: their sum comes off what the 835
posts, and each is marked matched (its ``detail.response`` the ClaimResponse now holding
the adjudication), so that a later 835 does not match it again. The 835 is what the
Invoice then shows as the insurer's.
"""

from __future__ import annotations

from decimal import Decimal

from fhir_server.core.config import Settings
from fhir_server.core.money import decimal_of
from fhir_server.revenue.balances import Posting
from fhir_server.revenue.records import Resource
from fhir_server.search.parse import MAX_VALUES
from fhir_server.service import interactions as svc
from fhir_server.service.criteria import search_token
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import BILL_INVOICE

ZERO = Decimal(0)


async def unmatched(repo: Repository, settings: Settings, *, invoice_ids: list[str],
                    payer_ref: str) -> dict[str, list[Resource]]:
    """The payer's hand-recorded payments on these Invoices that no 835 has matched yet,
    by Invoice id: one search per ``MAX_VALUES`` Invoices, the most a search parameter
    takes (an 835 may pay a thousand claims)."""
    out: dict[str, list[Resource]] = {}
    wanted = list(dict.fromkeys(invoice_ids))
    for start in range(0, len(wanted), MAX_VALUES):
        tokens = ",".join(search_token(BILL_INVOICE, f"Invoice/{i}")
                          for i in wanted[start:start + MAX_VALUES])
        for payment in await svc.find_resources(repo=repo, settings=settings,
                                                type_="PaymentReconciliation",
                                                criteria=[("identifier", tokens)]):
            if (payment.get("paymentIssuer") or {}).get("reference") != payer_ref or \
                    payment.get("status") != "active" or any(
                        (d.get("response") or {}).get("reference")
                        for d in payment.get("detail") or []):
                continue
            for identifier in payment.get("identifier") or []:
                if identifier.get("system") == BILL_INVOICE:
                    out.setdefault(str(identifier.get("value", "")).split("/")[-1],
                                   []).append(payment)
    return out


def match(posting: Posting, payments: list[Resource], response_id: str
          ) -> tuple[Posting, list[tuple[Resource, int | None]]]:
    """``posting`` (an 835's adjudication of the bill's claim) less the hand-recorded
    ``payments`` it reports, and those payments marked matched (to write with it)."""
    if posting.insurer <= 0 or not payments:
        return posting, []
    taken = ZERO
    writes: list[tuple[Resource, int | None]] = []
    for payment in payments:
        taken += decimal_of((payment.get("paymentAmount") or {}).get("value", 0))
        details = [{**d, "response": {"reference": f"ClaimResponse/{response_id}"}}
                   for d in payment.get("detail") or []]
        version = int(payment["meta"]["versionId"])
        writes.append(({**{k: v for k, v in payment.items() if k != "meta"},
                        "detail": details}, version))
    return Posting(insurer=posting.insurer - taken, adjustment=posting.adjustment,
                   patient_paid=posting.patient_paid), writes
