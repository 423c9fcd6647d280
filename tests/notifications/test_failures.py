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
from tests.workflow.helpers import requested

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


@pytest.mark.parametrize("attempts", [2])
async def test_a_notify_patient_task_requested_or_retried_sends_the_message_again(
        client: httpx.AsyncClient, smtp_port: int, sms: SmsProvider) -> None:
    person = await created(client, email_only())
    start = starts_in(timedelta(days=3))
    await created(client, appointment(person["id"], start))
    [communication] = await recorded(client, person["id"], 1)
    assert communication["status"] == "not-done"
    [task] = await arrived_tasks(client, f"Communication/{communication['id']}")
    # Requested while the SMTP server is still down: tried again, failed with the reason.
    again = await requested(client, task["id"])
    assert again["status"] == "failed"
    assert "SMTP server could not be reached" in again["statusReason"]["text"]
    still = (await client.get(f"Communication/{communication['id']}")).json()
    assert still["status"] == "not-done"
    assert int(still["meta"]["versionId"]) == int(communication["meta"]["versionId"]) + 1
    # The server is up: $retry sets the Task to requested and the message is sent once,
    # the same Communication is completed and the Task completed with it.
    box = Inbox()
    controller = smtp_server(box, smtp_port)
    try:
        done = await retried(client, task["id"])
        assert done["status"] == "completed" and "statusReason" not in done
        assert done["output"] == [{"type": {"text": "Communication"}, "valueReference": {
            "reference": f"Communication/{communication['id']}"}}]
        [mail] = await arrived(box.messages, 1, within=15)
        assert clinic_time(start, CLINIC_TZ) in mail.get_content()
        [sent] = await recorded(client, person["id"], 1)
        assert sent["id"] == communication["id"] and sent["status"] == "completed"
        assert "sent" in sent and "statusReason" not in sent
        await settle()
        assert len(box.messages) == 1
    finally:
        controller.stop()
    # Completed, it is not retried.
    r = await client.post(f"Task/{task['id']}/$retry", json={"resourceType": "Parameters"})
    assert r.status_code == 422 and "completed" in r.json()["issue"][0]["diagnostics"], r.text


async def retried(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """``$retry`` of a notify-patient Task: answered at once, the Task requested; then the
    Task as the notifications worker leaves it."""
    r = await client.post(f"Task/{task_id}/$retry", json={"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    answered = r.json()
    assert answered["status"] == "requested", answered
    version = int(answered["meta"]["versionId"])
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        task: dict[str, Any] = (await client.get(f"Task/{task_id}")).json()
        if int(task["meta"]["versionId"]) > version and task["status"] != "requested":
            return task
        assert asyncio.get_running_loop().time() < deadline, f"Task/{task_id} still requested"
        await asyncio.sleep(0.05)
