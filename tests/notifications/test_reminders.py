"""Reminders: an appointment starting within FHIR_REMINDER_HOURS is reminded once per start
time, whatever the number of scans; one starting later is not reminded yet."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage

import httpx
import pytest

from tests.notifications.builders import appointment, clinic_time, patient, starts_in
from tests.notifications.peers import CLINIC_TZ, Inbox, SmsProvider, arrived, peer_settings, settle
from tests.notifications.records import created, recorded

HOURS = 24


@pytest.fixture
def settings_overrides(smtp_port: int, sms: SmsProvider) -> dict[str, object]:
    return peer_settings(smtp_port, sms, fhir_reminder_hours=HOURS,
                         fhir_reminder_scan_seconds=0.1)


def reminders(box: Inbox) -> list[EmailMessage]:
    return [m for m in box.messages if m["Subject"].startswith("Reminder")]


async def test_an_appointment_within_the_window_is_reminded_once(
        client: httpx.AsyncClient, inbox: Inbox, sms: SmsProvider) -> None:
    person = await created(client, patient())
    soon = starts_in(timedelta(hours=HOURS - 2))
    later = starts_in(timedelta(hours=HOURS + 24))
    booked = await created(client, appointment(person["id"], soon))
    await created(client, appointment(person["id"], later))
    # two confirmations and one reminder, by email and by SMS
    await recorded(client, person["id"], 6)
    await settle(1.0)  # ten scans more
    [reminder] = reminders(inbox)
    assert clinic_time(soon, CLINIC_TZ) in reminder.get_content()
    assert booked["id"] in reminder.get_content()
    assert sum("Reminder" in p.form["Body"] for p in sms.posts) == 1
    assert len(inbox.messages) == 3 and len(sms.posts) == 3

    moved = starts_in(timedelta(hours=HOURS - 5))  # a new start: a new reminder
    answer = await client.put(f"Appointment/{booked['id']}", json={
        **appointment(person["id"], moved), "id": booked["id"]})
    assert answer.status_code == 200, answer.text
    await arrived(inbox.messages, 5)  # the rescheduling and the new reminder
    await settle(1.0)
    assert [clinic_time(moved, CLINIC_TZ) in m.get_content() for m in reminders(inbox)] == [
        False, True]
    assert len(inbox.messages) == 5
