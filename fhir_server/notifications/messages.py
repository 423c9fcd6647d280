"""What a patient is told at a step of the journey: the notice of an event or a reminder.

A notice names the patient, what it is about (the Appointment, Invoice or
PaymentReconciliation, as the event's version wrote it), the template kind and the values
the template may use, which keep the least health data that serves: the clinic-local date
and time (FHIR_CLINIC_TIMEZONE), an amount, identifiers. Never a code, a diagnosis, a
reason for the visit, a practitioner or a location.

* ``appointment-*``: the Appointment's first participant that is a Patient; ``when`` its
  ``start`` in the clinic's time zone;
* ``invoice-issued``: the Invoice's ``subject`` when it is a Patient; ``amount`` the
  patient's share (the ``patient`` component of ``invoice-share``), else ``totalGross``.
  A bill with a Claim (``urn:fhir-rcm-server:invoice`` identifier) is not told when it is
  issued, while the payer has yet to answer: the patient would be told to pay the whole
  total. It is told once, on the payer's answer (``claim-response``: the ClaimResponse,
  and the Invoice's shares, are written in one commit), with the patient's share, keyed by
  the Invoice (``bill-Invoice/<id>``: a later answer for the same bill tells nothing new);
* ``payment-posted``: the patient when every Invoice the payment is allocated to
  (``detail.request``) has the same Patient as ``subject``; ``amount`` the payment's
  ``paymentAmount``. A payment of several patients (a remittance) tells none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from fhir_server.core.config import Settings
from fhir_server.core.fhirjson import loads_stored
from fhir_server.core.money import decimal_of
from fhir_server.events.event import Event
from fhir_server.revenue.cob import next_insurance
from fhir_server.revenue.records import LOCAL_REF, local_patient
from fhir_server.revenue.states import ClaimOutcome, claim_outcome
from fhir_server.service import interactions as svc
from fhir_server.service.criteria import search_token
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import BILL_INVOICE, INVOICE_SHARE

Resource = dict[str, Any]
# The journey topics told to the patient, and the reminder's kind.
EVENT_KINDS = ("appointment-booked", "appointment-rescheduled", "appointment-cancelled",
               "invoice-issued", "claim-response", "payment-posted")
REMINDER = "appointment-reminder"
TIME_FORMAT = "%Y-%m-%d %H:%M"


@dataclass(frozen=True)
class Notice:
    key: str  # "event-<number>" or "reminder-Appointment/<id>-<start>": one per channel
    kind: str  # the template kind
    patient: str  # "Patient/<id>"
    about: str  # "Appointment/<id>", "Invoice/<id>", "PaymentReconciliation/<id>"
    values: dict[str, str] = field(default_factory=dict)


def local_time(start: object, timezone: str) -> str | None:
    """An instant written in the clinic's time zone (``TIME_FORMAT``), or None."""
    if not isinstance(start, str):
        return None
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(timezone)).strftime(TIME_FORMAT)


def amount_text(money: object, default_currency: str) -> str | None:
    """A Money as "<value with 2 decimals> <currency>", or None."""
    if not isinstance(money, dict) or money.get("value") is None:
        return None
    try:
        value = Decimal(str(money["value"])).quantize(Decimal("0.01"))
    except InvalidOperation:
        return None
    return f"{value} {money.get('currency') or default_currency}"


def appointment_notice(appointment: Resource, *, key: str, kind: str,
                       settings: Settings) -> Notice | None:
    patient = next((p for p in (local_patient(((part or {}).get("actor") or {}).get("reference"))
                                for part in appointment.get("participant") or []) if p), None)
    when = local_time(appointment.get("start"), settings.fhir_clinic_timezone)
    if patient is None or when is None:
        return None
    return Notice(key=key, kind=kind, patient=patient, about=f"Appointment/{appointment['id']}",
                  values={"when": when, "timezone": settings.fhir_clinic_timezone,
                          "appointment": str(appointment["id"])})


def adjudicated_share(invoice: Resource) -> object:
    """The Invoice's ``patient`` share component's amount (None: no payer answered)."""
    for component in invoice.get("totalPriceComponent") or []:
        codes = ((component or {}).get("code") or {}).get("coding") or []
        if any(c.get("system") == INVOICE_SHARE and c.get("code") == "patient" for c in codes):
            return component.get("amount")
    return None


def patient_share(invoice: Resource) -> object:
    """The Invoice's ``patient`` share component's amount, else its ``totalGross``."""
    share = adjudicated_share(invoice)
    return share if share is not None else invoice.get("totalGross")


async def claimed(repo: Repository, settings: Settings, invoice_id: str) -> bool:
    """Whether a Claim bills this Invoice (its payer's answer gives the patient's share)."""
    return bool(await svc.find_matches(
        repo=repo, settings=settings, type_="Claim",
        criteria=[("identifier", search_token(BILL_INVOICE, f"Invoice/{invoice_id}"))]))


async def answered_bill_notice(repo: Repository, response: Resource, *, answered: datetime,
                               settings: Settings) -> Notice | None:
    """The bill of the Claim a ClaimResponse answers, as the answer left it (``answered``:
    the ClaimResponse's commit, which wrote the patient's share): a payment posted since
    lowers what the patient owes, and the notice may be made after it. None: no such bill
    on this server, or no share yet."""
    claim_ref = LOCAL_REF.match(str((response.get("request") or {}).get("reference")))
    if claim_ref is None or claim_ref.group(1) != "Claim":
        return None
    _, claim = await svc.current_resource(repo, "Claim", claim_ref.group(2))
    invoice_ref = next((i.get("value") for i in (claim or {}).get("identifier") or []
                        if i.get("system") == BILL_INVOICE), None)
    match = LOCAL_REF.match(invoice_ref) if isinstance(invoice_ref, str) else None
    if match is None or match.group(1) != "Invoice":
        return None
    invoice = await _as_of(repo, "Invoice", match.group(2), answered)
    share = adjudicated_share(invoice) if invoice is not None else None
    if invoice is None or share is None:
        return None
    if (claim_outcome(response) is ClaimOutcome.COMPLETE and next_insurance(claim or {})
            and isinstance(share, dict) and decimal_of(share.get("value", 0)) > 0):
        return None  # the next payer is billed what is left: the patient is told after it
    return invoice_notice(invoice, key=f"bill-Invoice/{invoice['id']}", settings=settings)


async def _as_of(repo: Repository, type_: str, id_: str, at: datetime) -> Resource | None:
    """The version of ``type_/id_`` current at ``at`` (None: none then, or deleted)."""
    stored = await repo.current(type_=type_, id_=id_)
    while stored is not None and stored.last_updated > at and stored.version > 1:
        stored = await repo.version(type_=type_, id_=id_, version=stored.version - 1)
    if stored is None or stored.text is None or stored.last_updated > at:
        return None
    return loads_stored(stored.text)


def invoice_notice(invoice: Resource, *, key: str, settings: Settings) -> Notice | None:
    patient = local_patient((invoice.get("subject") or {}).get("reference"))
    amount = amount_text(patient_share(invoice), settings.fhir_billing_currency)
    if patient is None or amount is None:
        return None
    return Notice(key=key, kind="invoice-issued", patient=patient,
                  about=f"Invoice/{invoice['id']}",
                  values={"amount": amount, "invoice": str(invoice["id"])})


async def payment_notice(repo: Repository, payment: Resource, *, key: str,
                         settings: Settings) -> Notice | None:
    patients: set[str | None] = set()
    for detail in payment.get("detail") or []:
        match = LOCAL_REF.match(str(((detail or {}).get("request") or {}).get("reference")))
        if not match or match.group(1) != "Invoice":
            continue
        stored = await repo.current(type_="Invoice", id_=match.group(2))
        invoice = loads_stored(stored.text) if stored and stored.text else {}
        patients.add(local_patient((invoice.get("subject") or {}).get("reference")))
    amount = amount_text(payment.get("paymentAmount"), settings.fhir_billing_currency)
    if len(patients) != 1 or None in patients or amount is None:
        return None  # not determinable: no one, or several patients
    [patient] = patients
    assert patient is not None
    return Notice(key=key, kind="payment-posted", patient=patient,
                  about=f"PaymentReconciliation/{payment['id']}",
                  values={"amount": amount, "payment": str(payment["id"])})


async def event_notice(repo: Repository, settings: Settings, event: Event) -> Notice | None:
    """The notice of an outbox event (None: not one the patient is told of, or no patient)."""
    kind = next((t for t in event.topics if t in EVENT_KINDS), None)
    if kind is None:
        return None
    stored = await repo.version(type_=event.type_, id_=event.id_, version=event.version)
    if stored is None or stored.text is None:
        return None
    resource = loads_stored(stored.text)
    key = f"event-{event.number}"
    if event.type_ == "Appointment":
        return appointment_notice(resource, key=key, kind=kind, settings=settings)
    if event.type_ == "Invoice":
        if await claimed(repo, settings, event.id_):
            return None  # told with the payer's answer
        return invoice_notice(resource, key=key, settings=settings)
    if event.type_ == "ClaimResponse":
        return await answered_bill_notice(repo, resource, answered=stored.last_updated,
                                          settings=settings)
    if event.type_ == "PaymentReconciliation":
        return await payment_notice(repo, resource, key=key, settings=settings)
    return None


def reminder_notice(appointment: Resource, *, settings: Settings) -> Notice | None:
    """The reminder of a booked Appointment: one per (appointment, start)."""
    key = f"reminder-Appointment/{appointment.get('id')}-{appointment.get('start')}"
    return appointment_notice(appointment, key=key, kind=REMINDER, settings=settings)


CATEGORY = "patient notification: "  # Communication.category.text: this, then the kind


async def resent_notice(repo: Repository, settings: Settings, *, key: str, kind: str,
                        about: str) -> Notice | None:
    """The notice a not-done Communication recorded (its key, kind and ``about``), to send
    again: made from what it is about as it is now (the values of the event's version are
    not kept), so a resent appointment notice gives the current time. None when that is
    gone or no longer names one patient."""
    match = LOCAL_REF.match(about)
    if match is None:
        return None
    _, resource = await svc.current_resource(repo, match.group(1), match.group(2))
    if resource is None:
        return None
    if match.group(1) == "Appointment" and (kind in EVENT_KINDS or kind == REMINDER):
        return appointment_notice(resource, key=key, kind=kind, settings=settings)
    if match.group(1) == "Invoice" and kind == "invoice-issued":
        return invoice_notice(resource, key=key, settings=settings)
    if match.group(1) == "PaymentReconciliation" and kind == "payment-posted":
        return await payment_notice(repo, resource, key=key, settings=settings)
    return None
