"""The hand-recorded payments an 835 looks up (``operations/hand_payments.py``): an 835
paying more claims than one search parameter takes values is looked up in several
searches, and finds the payments of the payer that no 835 matched."""

from __future__ import annotations

import uuid
from decimal import Decimal

from fhir_server.operations.common import commit_new
from fhir_server.operations.hand_payments import unmatched
from fhir_server.search.parse import MAX_VALUES
from fhir_server.storage.repository import Repository
from tests.support.store import Store

PAYER = "Organization/payer"


def payment(invoice: str, payer: str, *, matched: bool = False) -> dict[str, object]:
    detail: dict[str, object] = {"type": {"text": "payment"},
                                 "request": {"reference": f"Invoice/{invoice}"}}
    if matched:
        detail["response"] = {"reference": "ClaimResponse/done"}
    return {"resourceType": "PaymentReconciliation", "id": str(uuid.uuid4()), "status": "active",
            "created": "2026-12-01T00:00:00Z", "paymentDate": "2026-12-01",
            "paymentIssuer": {"reference": payer},
            "identifier": [{"system": "urn:fhir-rcm-server:invoice", "value": f"Invoice/{invoice}"}],
            "paymentAmount": {"value": Decimal(10), "currency": "USD"}, "detail": [detail]}


async def test_more_bills_than_a_search_takes_are_looked_up(repo: Repository,
                                                            store: Store) -> None:
    invoices = [f"inv{n}" for n in range(MAX_VALUES * 2 + 5)]
    by_hand = [payment(invoices[-1], PAYER), payment(invoices[0], PAYER),
               payment(invoices[1], "Organization/other"),
               payment(invoices[2], PAYER, matched=True)]
    await commit_new(repo, store.settings(), [(p, None) for p in by_hand])
    found = await unmatched(repo, store.settings(), invoice_ids=invoices, payer_ref=PAYER)
    assert {k: [p["id"] for p in v] for k, v in found.items()} == {
        invoices[-1]: [by_hand[0]["id"]], invoices[0]: [by_hand[1]["id"]]}
