"""Appointment rules: no double booking, and a draft Invoice that follows the booking.

* Booking (status ``booked``, ``arrived`` or ``checked-in``) needs ``start`` and
  ``end`` and is refused (409) when another active appointment of one of its
  practitioners or locations overlaps it. The check runs under a lease per
  practitioner and location (``storage/locks.py``), so two racing bookings cannot
  both pass it, in one process or several.
* Booking creates one draft Invoice for the appointment's patient. Its id is
  derived from the appointment's (uuid5), it carries the identifier
  ``urn:fhir-rcm-server:bill|Appointment/[id]`` and the extension
  ``invoice-appointment``. Cancelling the appointment cancels the Invoice; a
  ``noshow`` keeps it. The Invoice is written in the same all-or-nothing commit as
  the appointment, so the side effect happens exactly once, also across a crash.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fhir_server import interactions as svc
from fhir_server import rules
from fhir_server.errors import Conflict, Unprocessable
from fhir_server.storage.model import instant, now_ms
from terminology.systems import BILL_KEY, INVOICE_APPOINTMENT

ACTIVE = frozenset({"booked", "arrived", "checked-in"})
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
    return resource is not None and resource.get("status") in ACTIVE


class AppointmentRules:
    def lease_names(self, change: rules.Change) -> list[str]:
        if not _booking(change.after):
            return []
        return [f"schedule:{ref}" for _, ref in _actors(change.after or {}, SCHEDULED)]

    async def check(self, ctx: rules.RuleContext, change: rules.Change) -> list[rules.SideWrite]:
        after = change.after
        if after is None:
            return []
        if _booking(after):
            await self._refuse_overlaps(ctx, change.id_, after)
        return await self._invoice(ctx, change.id_, after)

    async def _refuse_overlaps(self, ctx: rules.RuleContext, id_: str,
                               after: dict[str, Any]) -> None:
        start, end = _period(after)
        actors = _actors(after, SCHEDULED)
        if not actors:
            return
        others = await svc.find_resources(
            repo=ctx.repo, settings=ctx.settings, type_="Appointment",
            criteria=[("actor", ",".join(sorted({ref for _, ref in actors}))),
                      ("status", ",".join(sorted(ACTIVE)))])
        others += [s.after for s in ctx.siblings
                   if s.type_ == "Appointment" and s.after is not None and _booking(s.after)]
        for other in others:
            if other.get("id") == id_:
                continue
            try:
                o_start, o_end = _period(other)
            except Unprocessable:
                continue  # stored before this rule existed: it cannot book anything
            if not (o_start < end and start < o_end):
                continue
            theirs = {ref for _, ref in _actors(other, SCHEDULED)}
            for index, ref in actors:
                if ref in theirs:
                    raise Conflict(
                        f"{ref} is already booked at an overlapping time by "
                        f"Appointment/{other.get('id')}",
                        expression=[f"Appointment.participant[{index}].actor"],
                        code="duplicate")

    async def _invoice(self, ctx: rules.RuleContext, id_: str,
                       after: dict[str, Any]) -> list[rules.SideWrite]:
        patients = _actors(after, ("Patient/",))
        if not patients:
            return []
        invoice_id = draft_invoice_id(id_)
        _, invoice = await svc.current_resource(ctx.repo, "Invoice", invoice_id)
        status = after.get("status")
        if _booking(after) and (invoice is None or invoice.get("status") == "cancelled"):
            return [rules.SideWrite("Invoice", invoice_id, {
                "resourceType": "Invoice", "id": invoice_id, "status": "draft",
                "extension": [{"url": INVOICE_APPOINTMENT,
                               "valueReference": {"reference": f"Appointment/{id_}"}}],
                "identifier": [{"system": BILL_KEY, "value": f"Appointment/{id_}"}],
                "subject": {"reference": patients[0][1]},
                "date": instant(now_ms()),
            })]
        if status == "cancelled" and invoice is not None and invoice.get("status") in (
                "draft", "issued"):
            return [rules.SideWrite("Invoice", invoice_id, {
                **invoice, "status": "cancelled", "cancelledReason": "Appointment cancelled"})]
        return []

