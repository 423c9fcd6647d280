"""Patient notifications at each step of the journey, through a real SMTP server and an SMS
provider on loopback: the clinic-local time, the amount, once per event and channel, and
nothing on a channel the patient opted out of."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
from fastapi import FastAPI

from fhir_server.events.event import Event
from fhir_server.events.topics import topics_of
from fhir_server.notifications.channels import channels
from fhir_server.notifications.consumer import NotificationsConsumer
from tests.notifications.builders import (
    EMAIL,
    MOBILE_SENT,
    REASON,
    appointment,
    clinic_time,
    issued_invoice,
    opt_out,
    patient,
    starts_in,
)
from tests.notifications.peers import (
    CLINIC_TZ,
    SMS_FROM,
    SMS_TOKEN,
    SMS_USER,
    Inbox,
    SmsProvider,
    arrived,
    basic_auth,
    settle,
)
from tests.notifications.records import communications, created, recorded


def amount(value: str) -> str:
    return f"{Decimal(value).quantize(Decimal('0.01'))} USD"


async def test_a_booking_is_confirmed_by_email_and_sms_in_clinic_time(
        client: httpx.AsyncClient, inbox: Inbox, sms: SmsProvider) -> None:
    person = await created(client, patient())
    start = starts_in(timedelta(days=3, hours=2))
    booked = await created(client, appointment(person["id"], start))
    [mail] = await arrived(inbox.messages, 1)
    [text] = await arrived(sms.posts, 1)
    local = clinic_time(start, CLINIC_TZ)
    assert mail["To"] == EMAIL and mail["From"] == "clinic@example.org"
    assert local in mail.get_content() and booked["id"] in mail.get_content()
    assert local in mail["Subject"]
    assert text.form == {"To": MOBILE_SENT, "From": SMS_FROM, "Body": text.form["Body"]}
    assert local in text.form["Body"] and booked["id"] in text.form["Body"]
    assert text.authorization == basic_auth(SMS_USER, SMS_TOKEN)
    for sent in (mail.as_string(), text.form["Body"]):  # the least health data
        assert REASON not in sent and "Chalmers" not in sent and "1974" not in sent
    found = await recorded(client, person["id"], 2)
    assert sorted(c["medium"][0]["text"] for c in found) == ["email", "sms"]
    for communication in found:
        assert communication["status"] == "completed" and communication["sent"]
        assert communication["about"] == [{"reference": f"Appointment/{booked['id']}"}]
        assert communication["recipient"] == [{"reference": f"Patient/{person['id']}"}]


async def test_a_cancellation_is_told(client: httpx.AsyncClient, inbox: Inbox,
                                      sms: SmsProvider) -> None:
    person = await created(client, patient())
    start = starts_in(timedelta(days=4))
    booked = await created(client, appointment(person["id"], start))
    await arrived(inbox.messages, 1)
    answer = await client.put(f"Appointment/{booked['id']}", json={
        **{k: v for k, v in booked.items() if k != "meta"}, "status": "cancelled"})
    assert answer.status_code == 200, answer.text
    _, cancelled = await arrived(inbox.messages, 2)
    assert "cancel" in cancelled["Subject"].lower()
    assert clinic_time(start, CLINIC_TZ) in cancelled.get_content()
    _, texted = await arrived(sms.posts, 2)
    assert "cancelled" in texted.form["Body"]


async def test_a_bill_tells_the_patient_share_else_the_total(
        client: httpx.AsyncClient, inbox: Inbox, sms: SmsProvider) -> None:
    person = await created(client, patient())
    shared = await created(client, issued_invoice(person["id"], gross="120.00",
                                                  patient_share="35.5"))
    [mail] = await arrived(inbox.messages, 1)
    assert amount("35.5") in mail.get_content() and shared["id"] in mail.get_content()
    [text] = await arrived(sms.posts, 1)
    assert amount("35.5") in text.form["Body"]
    await created(client, issued_invoice(person["id"], gross="80.25", patient_share=None))
    _, whole = await arrived(inbox.messages, 2)
    assert amount("80.25") in whole.get_content()


async def test_an_opt_out_sends_nothing_on_its_channel(
        client: httpx.AsyncClient, inbox: Inbox, sms: SmsProvider) -> None:
    person = await created(client, patient())
    await created(client, opt_out(person["id"], ("email",)))
    start = starts_in(timedelta(days=5))
    await created(client, appointment(person["id"], start))
    [text] = await arrived(sms.posts, 1)
    assert clinic_time(start, CLINIC_TZ) in text.form["Body"]
    await recorded(client, person["id"], 1)
    await settle()
    assert inbox.messages == []
    assert [c["medium"][0]["text"] for c in await communications(client, person["id"])] == [
        "sms"]
    other = await created(client, patient())
    await created(client, opt_out(other["id"]))  # no code: every channel
    await created(client, issued_invoice(other["id"], gross="10", patient_share=None))
    await settle()
    assert inbox.messages == [] and len(sms.posts) == 1
    assert await communications(client, other["id"]) == []


async def test_the_same_event_delivered_twice_sends_once(
        app: FastAPI, client: httpx.AsyncClient, inbox: Inbox, sms: SmsProvider) -> None:
    person = await created(client, patient())
    booked = await created(client, appointment(person["id"], starts_in(timedelta(days=3))))
    await recorded(client, person["id"], 2)
    repo, settings = app.state.repo, app.state.settings
    [change] = [c for c in await repo.events(after=0, limit=1000)
                if (c.type_, c.id_) == ("Appointment", booked["id"])]
    event = Event.of(change, await topics_of(repo, change))
    # A consumer of a restarted process, handed the event again.
    again = NotificationsConsumer(repo=repo, settings=settings, channels=channels(settings))
    try:
        assert await again.deliver([event]) == 1
    finally:
        await again.close()
    await settle()
    assert len(inbox.messages) == 1 and len(sms.posts) == 1
    assert len(await communications(client, person["id"])) == 2


async def test_spanish_speakers_are_written_to_in_spanish(
        client: httpx.AsyncClient, inbox: Inbox, sms: SmsProvider) -> None:
    person = await created(client, patient(language="es-MX"))
    start = starts_in(timedelta(days=3))
    await created(client, appointment(person["id"], start))
    [mail] = await arrived(inbox.messages, 1)
    assert "Su cita" in mail.get_content() and clinic_time(start, CLINIC_TZ) in mail.get_content()


async def test_a_payment_gets_a_receipt_with_its_amount(
        client: httpx.AsyncClient, inbox: Inbox, sms: SmsProvider) -> None:
    person = await created(client, patient())
    bill = await created(client, issued_invoice(person["id"], gross="100", patient_share=None))
    await recorded(client, person["id"], 2)  # the bill, by email and SMS
    paid = "40"
    answer = await client.post(f"Invoice/{bill['id']}/$record-payment", json={
        "resourceType": "Parameters", "parameter": [
            {"name": "amount", "valueMoney": {"value": float(paid), "currency": "USD"}},
            {"name": "method", "valueCode": "CASH"}]})
    assert answer.status_code == 200, answer.text
    payment = next(p["resource"] for p in answer.json()["parameter"]
                   if p["name"] == "paymentReconciliation")
    _, receipt = await arrived(inbox.messages, 2)
    assert amount(paid) in receipt.get_content() and payment["id"] in receipt.get_content()
    _, texted = await arrived(sms.posts, 2)
    assert amount(paid) in texted.form["Body"]
    found = await recorded(client, person["id"], 4)
    assert sum(c["about"] == [{"reference": f"PaymentReconciliation/{payment['id']}"}]
               for c in found) == 2
