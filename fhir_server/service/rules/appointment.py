"""Appointment rules: no double booking, and a draft Invoice that follows the booking.

* Booking (status ``booked``, ``arrived`` or ``checked-in``) needs ``start`` and
  ``end`` and is refused (409) when another active appointment of one of its
  practitioners or locations overlaps it. The check runs under a lease per
  practitioner and location (``storage/locks.py``), so two racing bookings cannot
  both pass it, in one process or several.
* Booking creates one draft Invoice for the appointment's patient. Its id is
  derived from the appointment's (uuid5), it carries the identifier
  ``urn:fhir-rcm-server:bill|Appointment/[id]`` and the extension
  ``invoice-appointment``. Cancelling the appointment (or deleting it, or marking it
  entered-in-error) cancels the Invoice while it is a draft; a ``noshow`` keeps it;
  an Invoice already issued as the visit's bill is left to billing. The Invoice is
  written in the same all-or-nothing commit as the appointment, so the side effect
  happens exactly once, also across a crash.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_server.core.errors import Conflict, Unprocessable
from fhir_server.revenue.states import (
    BOOKING,
    ENDING,
    AppointmentStatus,
    InvoiceStatus,
    invoice_status,
    state_of,
    transition,
)
from fhir_server.service import interactions as svc
from fhir_server.service import write_rules as rules
from fhir_server.storage.model import instant, now_ms
from fhir_server.terminology.systems import BILL_KEY, INVOICE_APPOINTMENT

ACTIVE = BOOKING  # booked, arrived, checked-in (revenue/states.py)
ENDED = ENDING  # cancelled, entered-in-error; and deletion. A noshow keeps its bill.
MAX_BOOKING = timedelta(days=7)
MAX_CANDIDATES = 10_000
SCHEDULED = ("Practitioner/", "Location/")
INVOICE_NAMESPACE = uuid.UUID("6f1c7d3e-52a4-4f0e-9c51-2b8f1e0a7d11")


def draft_invoice_id(appointment_id: str) -> str:
    return str(uuid.uuid5(INVOICE_NAMESPACE, f"Appointment/{appointment_id}"))


def _actors(appointment: dict[str, Any], prefixes: tuple[str, ...]) -> list[tuple[int, str]]:
    out = []
    for i, p in enumerate(appointment.get("participant") or []):
        ref = ((p or {}).get("actor") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith(prefixes) and p.get("status") != "declined":
            out.append((i, ref))
    return out


def _period(appointment: dict[str, Any]) -> tuple[datetime, datetime]:
    try:
        start = datetime.fromisoformat(appointment["start"])
        end = datetime.fromisoformat(appointment["end"])
    except (KeyError, TypeError, ValueError):
        raise Unprocessable("A booked appointment needs start and end instants",
                            expression=["Appointment.start", "Appointment.end"],
                            code="required") from None
    if end <= start:
        raise Unprocessable("Appointment.end must be after Appointment.start",
                            expression=["Appointment.end"], code="invariant")
    return start, end


def _booking(resource: dict[str, Any] | None) -> bool:
    return resource is not None and state_of(AppointmentStatus, resource.get("status")) in ACTIVE


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AppointmentRules:
    def lease_names(self, change: rules.Change) -> list[str]:
        if not _booking(change.after):
            return []
        return [f"schedule:{ref}" for _, ref in _actors(change.after or {}, SCHEDULED)]

    async def check(self, ctx: rules.RuleContext, change: rules.Change) -> list[rules.SideWrite]:
        if _booking(change.after):
            await self._refuse_overlaps(ctx, change.id_, change.after or {})
        return await self._invoice(ctx, change.id_, change.after)

    async def _refuse_overlaps(self, ctx: rules.RuleContext, id_: str,
                               after: dict[str, Any]) -> None:
        start, end = _period(after)
        if end - start > MAX_BOOKING:
            raise Unprocessable(f"A booking may last at most {MAX_BOOKING.days} days",
                                expression=["Appointment.end"], code="business-rule")
        actors = _actors(after, SCHEDULED)
        if not actors:
            return
        # Anything overlapping [start, end) starts before end and, lasting at most
        # MAX_BOOKING, after start - MAX_BOOKING: the date window keeps the search small.
        stored = await svc.find_resources(
            repo=ctx.repo, settings=ctx.settings, type_="Appointment", limit=MAX_CANDIDATES,
            criteria=[("actor", ",".join(sorted({ref for _, ref in actors}))),
                      ("status", ",".join(sorted(ACTIVE))),
                      ("date", f"lt{_stamp(end)}"), ("date", f"ge{_stamp(start - MAX_BOOKING)}")])
        if len(stored) >= MAX_CANDIDATES:
            raise Conflict("Too many bookings overlap this time to check; try again",
                           code="too-costly")
        others = {str(o.get("id")): o for o in stored}
        siblings = {s.id_ for s in ctx.siblings if s.type_ == "Appointment"}
        # The same transaction's other entries win over what is stored.
        for sibling in ctx.siblings:
            if sibling.type_ == "Appointment":
                others.pop(sibling.id_, None)
                if _booking(sibling.after):
                    others[sibling.id_] = sibling.after or {}
        others.pop(id_, None)
        for other_id, other in sorted(others.items()):
            try:
                o_start, o_end = _period(other)
            except Unprocessable:
                continue  # stored before this rule existed: it cannot book anything
            if not (o_start < end and start < o_end):
                continue
            theirs = {ref for _, ref in _actors(other, SCHEDULED)}
            for index, ref in actors:
                if ref in theirs:
                    # Another patient's booking is not named to a caller who cannot see it.
                    named = (other_id in siblings or await ctx.sees("Appointment", other_id))
                    raise Conflict(
                        f"{ref} is already booked at an overlapping time"
                        + (f" by Appointment/{other_id}" if named else ""),
                        expression=[f"Appointment.participant[{index}].actor"],
                        code="duplicate")

    async def _invoice(self, ctx: rules.RuleContext, id_: str,
                       after: dict[str, Any] | None) -> list[rules.SideWrite]:
        invoice_id = draft_invoice_id(id_)
        _, invoice = await svc.current_resource(ctx.repo, "Invoice", invoice_id)
        patients = _actors(after or {}, ("Patient/",))
        if _booking(after) and patients:
            patient = patients[0][1]
            status = invoice_status(invoice)
            if invoice is None or status is InvoiceStatus.CANCELLED:
                return [rules.SideWrite("Invoice", invoice_id, {
                    "resourceType": "Invoice", "id": invoice_id,
                    "status": transition("Invoice", status, InvoiceStatus.DRAFT),
                    "extension": [{"url": INVOICE_APPOINTMENT,
                                   "valueReference": {"reference": f"Appointment/{id_}"}}],
                    "identifier": [{"system": BILL_KEY, "value": f"Appointment/{id_}"}],
                    "subject": {"reference": patient},
                    "date": instant(now_ms()),
                })]
            if status is InvoiceStatus.DRAFT and (invoice.get("subject") or {}).get(
                    "reference") != patient:
                return [rules.SideWrite("Invoice", invoice_id, {
                    **_content(invoice), "subject": {"reference": patient}})]
            return []
        ends_it = after is None or state_of(AppointmentStatus, after.get("status")) in ENDED
        if ends_it and invoice is not None and invoice_status(invoice) is InvoiceStatus.DRAFT:
            # Only a draft follows the appointment: an issued bill is billing's to cancel.
            return [rules.SideWrite("Invoice", invoice_id, {
                **_content(invoice),
                "status": transition("Invoice", invoice["status"], InvoiceStatus.CANCELLED),
                "cancelledReason": "Appointment cancelled"})]
        return []


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}
