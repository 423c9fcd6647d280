"""``Invoice/[id]/$record-payment``: a payment by the patient (or an insurer, by hand).

It writes, in one all-or-nothing commit, a PaymentReconciliation allocated to the Invoice
(``detail.request`` = the Invoice, identifier ``urn:fhir-rcm-server:invoice|Invoice/[id]``,
the method as R5's cross-version ``method`` extension with a v2-0570 code) and the
Invoice's new balance (``revenue/balances.py``): a patient's payment adds to ``patient-paid``,
an Organization's to ``insurer``; overpayment shows as ``credit``.
"""

from __future__ import annotations

import uuid

from fhir_server.core.errors import Conflict, NotFound, Unprocessable
from fhir_server.core.money import decimal_of, money
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.operations.common import commit_new, now_instant, today
from fhir_server.revenue.balances import Posting, currency_of, post
from fhir_server.revenue.records import LOCAL_REF, Resource
from fhir_server.revenue.states import (
    OPEN_INVOICES,
    PaymentReconciliationStatus,
    invoice_status,
    transition,
)
from fhir_server.service import interactions as svc
from fhir_server.storage.locks import LockBusy
from fhir_server.terminology.systems import (
    BILL_INVOICE,
    PAYMENT_KIND,
    PAYMENT_METHOD,
    PAYMENT_METHOD_EXTENSION,
)

METHODS = {"CASH": "Cash", "CCCA": "Credit card", "CCHK": "Cashier's check",
           "CDAC": "Credit/debit account", "CHCK": "Check", "DDPO": "Direct deposit",
           "DEBC": "Debit card", "SWFT": "SWIFT", "TRAC": "Traveler's check",
           "VISN": "VISA special clearing"}


def _where(name: str) -> list[str]:
    return [f"Parameters.parameter.where(name='{name}')"]


async def run(call: Call) -> Resource:
    id_ = call.id_ or ""
    await call.check(type_="Invoice", interaction="update", id_=id_)
    try:
        async with call.repo.locks.hold([f"invoice:Invoice/{id_}"]):
            return await _record(call, id_)
    except LockBusy:
        raise Conflict("Another payment for this Invoice is being recorded; try "
                       "again") from None


async def _record(call: Call, id_: str) -> Resource:
    version, invoice = await svc.current_resource(call.repo, "Invoice", id_)
    if invoice is None or version is None:
        raise NotFound(f"Invoice/{id_[:64]} is not known")
    if invoice_status(invoice) not in OPEN_INVOICES:
        raise Unprocessable(f"Only an issued (or balanced) Invoice takes payments; this one is "
                            f"{str(invoice.get('status'))[:20]}", expression=["Invoice.status"],
                            code="business-rule")
    currency = currency_of(invoice, call.settings.fhir_billing_currency)
    given = call.one("amount")
    if given.get("currency", currency) != currency:
        raise Unprocessable(f"The amount must be in {currency}", expression=_where("amount"))
    amount = decimal_of(given.get("value"), "Parameters.parameter.where(name='amount')")
    if amount <= 0:
        raise Unprocessable("amount must be more than 0", expression=_where("amount"))
    method = call.one("method")
    if method not in METHODS:
        raise Unprocessable(f"method must be a v2-0570 payment method: {', '.join(METHODS)}",
                            expression=_where("method"))
    payer_ref = _payer(call, invoice)
    call.concerns((invoice.get("subject") or {}).get("reference"))
    insurer = payer_ref.startswith("Organization/")
    posting = Posting(insurer=amount) if insurer else Posting(patient_paid=amount)
    paid_on = call.one("date") or today().isoformat()
    detail = {"type": {"coding": [{"system": PAYMENT_KIND, "code": "payment"}]},
              "request": {"reference": f"Invoice/{id_}"}, "submitter": {"reference": payer_ref},
              "date": paid_on, "amount": money(amount, currency)}
    reconciliation: Resource = {
        "resourceType": "PaymentReconciliation", "id": str(uuid.uuid4()),
        "extension": [{"url": PAYMENT_METHOD_EXTENSION, "valueCodeableConcept": {"coding": [
            {"system": PAYMENT_METHOD, "code": method, "display": METHODS[method]}]}}],
        "identifier": [{"system": BILL_INVOICE, "value": f"Invoice/{id_}"}],
        "status": transition("PaymentReconciliation", None, PaymentReconciliationStatus.ACTIVE),
        "created": now_instant(), "outcome": "complete",
        "disposition": f"{'Insurer' if insurer else 'Patient'} payment", "paymentDate": paid_on,
        "paymentAmount": money(amount, currency), "detail": [detail]}
    if insurer:
        reconciliation["paymentIssuer"] = {"reference": payer_ref}
    if call.one("reference"):
        reconciliation["paymentIdentifier"] = {"value": str(call.one("reference"))[:200]}
    updated = post(invoice, posting, currency)
    stored = await commit_new(call.repo, call.settings,
                              [(reconciliation, None), (updated, version)])
    return {"resourceType": "Parameters", "parameter": [
        {"name": "paymentReconciliation", "resource": stored[0]},
        {"name": "invoice", "resource": stored[1]}]}


def _payer(call: Call, invoice: Resource) -> str:
    given = call.one("payer")
    if given is None:
        reference = ((invoice.get("recipient") or invoice.get("subject") or {})
                     .get("reference"))
        return str(reference) if isinstance(reference, str) else "Patient/unknown"
    reference = given.get("reference")
    match = LOCAL_REF.match(reference) if isinstance(reference, str) else None
    if match is None or match.group(1) not in ("Patient", "RelatedPerson", "Organization"):
        raise Unprocessable("payer must reference a Patient, RelatedPerson or Organization",
                            expression=_where("payer"))
    return str(reference)


RECORD_PAYMENT = Operation(
    id="Invoice-record-payment", code="record-payment", title="Record a payment of an Invoice",
    description="Records a payment (by the patient, or by an insurer when `payer` is an "
    "Organization) as a PaymentReconciliation allocated to the Invoice, and updates the "
    "Invoice's balance (insurer, adjustment, patient-paid, patient owed, credit) in the same "
    "commit; the Invoice becomes balanced when nothing is owed.",
    resource=("Invoice",), type_level=False, instance=True,
    requires=(("Invoice", "u"), ("PaymentReconciliation", "c")),
    parameters=(
        Param("amount", "in", 1, "1", "Money", "The amount paid"),
        Param("date", "in", 0, "1", "date", "When it was paid (default: today)"),
        Param("method", "in", 1, "1", "code", "How: a v2-0570 code (CASH, CHCK, CCCA, ...)"),
        Param("reference", "in", 0, "1", "string", "Check number, receipt, card reference"),
        Param("payer", "in", 0, "1", "Reference",
              "Who paid (default: the Invoice's recipient, else its subject)"),
        Param("paymentReconciliation", "out", 1, "1", "PaymentReconciliation", "The payment"),
        Param("invoice", "out", 1, "1", "Invoice", "The Invoice with its new balance"),
    ),
    run=run)
