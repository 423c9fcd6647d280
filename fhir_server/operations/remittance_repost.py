"""Posting one claim payment of a kept 835 again: the ``$retry`` of a post-remittance Task.

The Task (``post_remittance_step.py``) names the 835 as kept (its DocumentReference, the
``focus``) and the claim payment in it (its ``identifier``). The interchange is read again
from the DocumentReference and checked as on import; under the remittance's lease
(``remittance:payer|trace``, the one the import holds) the claim payment is posted as the
import would have (the Claim's ClaimResponse, its bill's Invoice balance) and its detail
of the PaymentReconciliation gains the Claim and the ClaimResponse, all in one commit.
Then the Task is completed; when the payment still cannot be posted, the Task stays failed
with the reason of now. A claim payment posted meanwhile completes the Task as it is.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fhir_server.adapters.x12.remittance import ClaimPayment, Remittance, read_835
from fhir_server.adapters.x12.segments import X12Error
from fhir_server.core.config import Settings
from fhir_server.core.errors import Conflict, FhirError, Unprocessable
from fhir_server.operations import post_remittance_step as step
from fhir_server.operations.claim_submit import claim_response_id
from fhir_server.operations.common import commit_new
from fhir_server.operations.hand_payments import match, unmatched
from fhir_server.operations.remittance_claims import claim_response
from fhir_server.operations.remittance_posting import apply_file, file_kind, read_checked
from fhir_server.operations.worklist import complete_task
from fhir_server.revenue.balances import adjudication_posting, currency_of, post
from fhir_server.revenue.billing import bill_of
from fhir_server.revenue.records import LOCAL_REF, Resource
from fhir_server.service import interactions as svc
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import REMITTANCE_TRACE


def _gone(what: str) -> Unprocessable:
    return Unprocessable(f"{what}: there is nothing to post again (cancel the Task)",
                         expression=["Task.focus"])


async def repost(*, repo: Repository, settings: Settings, document_id: str,
                 item: str) -> None:
    """Post the claim payment ``item`` of the 835 kept as ``DocumentReference/[id]``."""
    _, document = await svc.current_resource(repo, "DocumentReference", document_id)
    if document is None:
        raise _gone(f"DocumentReference/{document_id} is no longer stored")
    remittance, index, payment = _claim_payment(_text(document), item, settings)
    related = [r.get("reference") for r in (document.get("context") or {}).get("related") or []]
    match = next((m for m in (LOCAL_REF.match(r) for r in related if isinstance(r, str))
                  if m and m.group(1) == "PaymentReconciliation"), None)
    if match is None:
        raise _gone(f"DocumentReference/{document_id} names no PaymentReconciliation")
    _, reconciliation = await svc.current_resource(repo, "PaymentReconciliation",
                                                   match.group(2))
    if reconciliation is None:
        raise _gone(f"PaymentReconciliation/{match.group(2)} is no longer stored")
    key = next((i.get("value") for i in reconciliation.get("identifier") or []
                if i.get("system") == REMITTANCE_TRACE), None)
    async with repo.locks.hold([f"remittance:{key}"]):
        response_id = await _post(repo, settings, reconciliation["id"], remittance, index,
                                  payment, document_id)
    if response_id is not None:
        await step.posted(repo=repo, settings=settings, document_id=document_id,
                          payment=payment, response_id=response_id)


async def repost_file(*, repo: Repository, settings: Settings, document_id: str) -> None:
    """Apply again the whole file kept as ``DocumentReference/[id]`` (its Task's item is
    ``FILE_ITEM``): applied, the Task completes with what it wrote; still refused, it stays
    failed with the reason of now."""
    _, document = await svc.current_resource(repo, "DocumentReference", document_id)
    if document is None:
        raise _gone(f"DocumentReference/{document_id} is no longer stored")
    text = _text(document)
    try:
        applied = await apply_file(repo=repo, settings=settings, text=text)
    except Conflict:
        raise
    except FhirError as error:
        if error.status >= 500:
            raise
        await step.set_aside_file(repo=repo, settings=settings, text=text, refused=error,
                                  kind=file_kind(text))
        return
    await complete_task(repo=repo, settings=settings, step=step.STEP,
                        focus=f"DocumentReference/{document_id}", item=step.FILE_ITEM,
                        results=[f"{r['resourceType']}/{r['id']}" for r in applied.written])


def _text(document: Resource) -> str:
    for content in document.get("content") or []:
        data = (content.get("attachment") or {}).get("data")
        if isinstance(data, str):
            try:
                return base64.b64decode(data, validate=True).decode("ascii")
            except (binascii.Error, UnicodeDecodeError):
                break
    raise _gone("The DocumentReference holds no X12 text")


def _claim_payment(text: str, item: str,
                   settings: Settings) -> tuple[Remittance, int, ClaimPayment]:
    try:
        remittances = read_835(read_checked(text, {"835"}, settings))
    except X12Error as error:
        raise _gone(f"The kept 835 is no longer readable at {error.where}") from None
    for remittance in remittances:
        for index, payment in enumerate(remittance.claims):
            if step.item_of(payment) == item:
                return remittance, index, payment
    raise _gone(f"The kept 835 holds no claim payment {item[:80]}")


async def _post(repo: Repository, settings: Settings, reconciliation_id: str,
                remittance: Remittance, index: int, payment: ClaimPayment,
                document_id: str) -> str | None:
    """Post the claim payment (the ClaimResponse's id), or update its Task (None)."""
    version, reconciliation = await svc.current_resource(repo, "PaymentReconciliation",
                                                         reconciliation_id)
    if reconciliation is None:
        raise _gone(f"PaymentReconciliation/{reconciliation_id} is no longer stored")
    details: list[dict[str, Any]] = reconciliation.get("detail") or []
    detail = details[index] if index < len(details) else {}
    if (detail.get("identifier") or {}).get("value") != payment.control[:64]:
        raise _gone(f"PaymentReconciliation/{reconciliation_id} has no detail for this "
                    "claim payment")
    done = LOCAL_REF.match(str((detail.get("response") or {}).get("reference", "")))
    if done is not None:  # posted meanwhile
        return done.group(2)
    payer_ref = str((reconciliation.get("paymentIssuer") or {}).get("reference", ""))
    _, claim = await svc.current_resource(repo, "Claim", payment.control[:64])
    if claim is not None and (claim.get("insurer") or {}).get("reference") != payer_ref:
        claim = None
    response_id = claim_response_id(claim["id"]) if claim is not None else ""
    previous_version, previous = (await svc.current_resource(repo, "ClaimResponse", response_id)
                                  if claim is not None else (None, None))
    error = step.problem(payment, claim, payer_ref, previous)
    if error is not None:
        await step.set_aside(repo=repo, settings=settings, document_id=document_id,
                             payment=payment, claim=claim, error=error)
        return None
    assert claim is not None  # problem() answers an error for no claim
    currency = settings.fhir_billing_currency
    response = claim_response(payment=payment, remittance=remittance, claim=claim,
                              id_=response_id, payer_ref=payer_ref, currency=currency,
                              previous=previous)
    detail.update(request={"reference": f"Claim/{claim['id']}"},
                  response={"reference": f"ClaimResponse/{response_id}"})
    reconciliation.pop("meta", None)
    writes: list[tuple[Resource, int | None]] = [(reconciliation, version),
                                                  (response, previous_version)]
    bill = await bill_of(repo, claim)
    if bill is not None:
        invoice, invoice_version = bill
        by_hand = await unmatched(repo, settings, invoice_ids=[invoice["id"]],
                                  payer_ref=payer_ref)
        posting, matched = match(adjudication_posting(response, previous),
                                 by_hand.get(invoice["id"], []), response_id)
        invoice = post(invoice, posting, currency_of(invoice, currency))
        invoice.pop("meta", None)
        writes += [(invoice, invoice_version), *matched]
    await commit_new(repo, settings, writes)
    return response_id
