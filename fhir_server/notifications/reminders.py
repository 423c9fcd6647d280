"""Reminders: each booked Appointment starting within FHIR_REMINDER_HOURS is reminded once.

Scanned every FHIR_REMINDER_SCAN_SECONDS by the notifications consumer while it holds its
lease (one process at a time). The reminder's key names the Appointment and its ``start``
(``messages.reminder_notice``), so an appointment gets one reminder per start time: a
rescheduled one is reminded again of its new time, a scan that finds it again sends
nothing more (``delivery.py``). An appointment booked within the window is reminded at
the next scan, beside its booking confirmation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from fhir_server.core.config import Settings
from fhir_server.notifications.messages import Notice, reminder_notice
from fhir_server.service import interactions as svc
from fhir_server.storage.model import instant
from fhir_server.storage.repository import Repository

SCAN_LIMIT = 1000  # appointments reminded at most per scan; the rest at the next


class Notifier(Protocol):
    async def notify(self, notice: Notice) -> None: ...


async def remind(*, repo: Repository, settings: Settings, delivery: Notifier) -> int:
    """Send the reminders due now; how many appointments were due."""
    now = datetime.now(UTC)
    horizon = now + timedelta(hours=settings.fhir_reminder_hours)
    due = await svc.find_resources(repo=repo, settings=settings, type_="Appointment", criteria=[
        ("status", "booked"), ("date", f"ge{instant(now)}"), ("date", f"le{instant(horizon)}")],
        limit=SCAN_LIMIT)
    for appointment in due:
        notice = reminder_notice(appointment, settings=settings)
        if notice is not None:
            await delivery.notify(notice)
    return len(due)
