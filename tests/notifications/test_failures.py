"""A channel that fails: the SMTP server down then up sends once; down for good, the message
ends as a not-done Communication with a reason and a notify-patient worklist Task; an SMS
provider that refuses is not asked again."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.notifications.builders import EMAIL, appointment, clinic_time, patient, starts_in
from tests.notifications.peers import (
    CLINIC_TZ,
    Inbox,
    SmsProvider,
    arrived,
    peer_settings,
    settle,
    smtp_server,
)
from tests.notifications.records import created, recorded

WORKLIST = "https://fhir-rcm-server.org/CodeSystem/worklist"


@pytest.fixture
def attempts() -> int:
    return 8


@pytest.fixture
def settings_overrides(smtp_port: int, sms: SmsProvider, attempts: int) -> dict[str, object]:
    return peer_settings(smtp_port, sms, fhir_notify_attempts=attempts,
                         fhir_notify_backoff=0.1)


async def arrived_tasks(client: httpx.AsyncClient, focus: str) -> list[dict[str, Any]]:
    """The notify-patient Tasks about ``focus``, once there is one (it follows the
    Communication)."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        bundle = (await client.get("Task", params={"code": f"{WORKLIST}|notify-patient",
                                                   "focus": focus})).json()
        if bundle.get("entry") or asyncio.get_running_loop().time() > deadline:
            return [e["resource"] for e in bundle.get("entry", [])]
        await asyncio.sleep(0.05)


def email_only() -> dict[str, Any]:
    return patient(telecom=[{"system": "email", "value": EMAIL}])


async def test_smtp_down_then_up_delivers_once(client: httpx.AsyncClient, smtp_port: int,
                                               sms: SmsProvider) -> None:
    person = await created(client, email_only())
    start = starts_in(timedelta(days=3))
    await created(client, appointment(person["id"], start))
    await asyncio.sleep(0.3)  # a first attempt or more finds no server
    box = Inbox()
    controller = smtp_server(box, smtp_port)
    try:
        [mail] = await arrived(box.messages, 1, within=30)
        assert clinic_time(start, CLINIC_TZ) in mail.get_content()
        [communication] = await recorded(client, person["id"], 1)
        assert communication["status"] == "completed"
        await settle()
        assert len(box.messages) == 1
        assert sms.posts == []  # no mobile number
    finally:
        controller.stop()


@pytest.mark.parametrize("attempts", [2])
async def test_smtp_down_for_good_ends_not_done_with_a_task(
        client: httpx.AsyncClient, sms: SmsProvider) -> None:
    person = await created(client, email_only())
    booked = await created(client, appointment(person["id"], starts_in(timedelta(days=3))))
    [communication] = await recorded(client, person["id"], 1)
    assert communication["status"] == "not-done" and "sent" not in communication
    reason = communication["statusReason"]["text"]
    assert "SMTP server could not be reached" in reason and "2 attempt" in reason
    assert communication["about"] == [{"reference": f"Appointment/{booked['id']}"}]
    [task] = await arrived_tasks(client, f"Communication/{communication['id']}")
    assert task["status"] == "failed" and task["statusReason"]["text"] == reason
    assert task["for"] == {"reference": f"Patient/{person['id']}"}

    # The message is not resent: an update to requested is refused, saying what to do
    # (rather than leaving the Task requested with nothing running), and so is $retry.
    r = await client.put(f"Task/{task['id']}", json={**task, "status": "requested"})
    assert r.status_code == 422, r.text
    [issue] = r.json()["issue"]
    assert issue["code"] == "business-rule" and issue["expression"] == ["Task.status"]
    assert "not resent" in issue["diagnostics"] and "completed" in issue["diagnostics"]
    r = await client.post(f"Task/{task['id']}/$retry", json={"resourceType": "Parameters"})
    assert r.status_code == 422, r.text
    # The office tells the patient another way and closes the Task by hand.
    r = await client.put(f"Task/{task['id']}", json={**task, "status": "completed"})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text


@pytest.mark.parametrize("sms_status", [400])
async def test_a_refused_text_is_not_sent_again(client: httpx.AsyncClient,
                                                sms: SmsProvider) -> None:
    person = await created(client, patient(telecom=[
        {"system": "sms", "value": "+1 555 123 4567"}]))
    await created(client, appointment(person["id"], starts_in(timedelta(days=3))))
    [communication] = await recorded(client, person["id"], 1)
    assert communication["status"] == "not-done"
    assert communication["statusReason"]["text"] == (
        "the SMS provider refused the message (after 1 attempt(s))")
    await settle()
    assert len(sms.posts) == 1


async def test_no_valid_address_sends_and_records_nothing(client: httpx.AsyncClient,
                                                          sms: SmsProvider) -> None:
    person = await created(client, patient(telecom=[
        {"system": "sms", "value": "12"},  # too short
        {"system": "email", "value": "old@example.org", "period": {"end": "2020-01-01"}}]))
    await created(client, appointment(person["id"], starts_in(timedelta(days=3))))
    await settle()
    assert sms.posts == []
    assert (await client.get("Communication", params={
        "subject": f"Patient/{person['id']}"})).json().get("total", 0) == 0
