"""Appointment booking rules over HTTP: double booking refused (also when racing), draft Invoice."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests import factories
from tests.factories import patient

BILL_KEY = "urn:fhir-rcm-server:bill"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def appointment(*, patient_ref: str, actors: list[str], start: int, end: int,
                status: str = "booked") -> dict[str, Any]:
    return factories.appointment(patient_ref, actors, at(start), at(end), status=status)


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(resource["resourceType"], json=resource)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def setup(client: httpx.AsyncClient) -> tuple[str, str, str]:
    pat = await create(client, patient())
    doc = await create(client, {"resourceType": "Practitioner", "name": [{"family": "Who"}]})
    room = await create(client, {"resourceType": "Location", "name": "Room 1"})
    return f"Patient/{pat['id']}", f"Practitioner/{doc['id']}", f"Location/{room['id']}"


async def bill_invoices(client: httpx.AsyncClient, appointment_id: str) -> list[dict[str, Any]]:
    r = await client.get("Invoice", params={"identifier": f"{BILL_KEY}|Appointment/{appointment_id}"})
    assert r.status_code == 200
    return [e["resource"] for e in r.json().get("entry", [])]


async def test_overlap_with_same_practitioner_is_refused_and_names_the_booking(
        client: httpx.AsyncClient) -> None:
    pat, doc, room = await setup(client)
    first = await create(client, appointment(patient_ref=pat, actors=[doc, room], start=0, end=30))
    r = await client.post("Appointment", json=appointment(patient_ref=pat, actors=[doc],
                                                          start=15, end=45))
    assert r.status_code == 409
    issue = r.json()["issue"][0]
    assert f"Appointment/{first['id']}" in issue["diagnostics"]
    assert doc in issue["diagnostics"]
    assert issue["expression"] == ["Appointment.participant[1].actor"]
    # Same room, other practitioner: refused too; back to back is fine.
    other = await create(client, {"resourceType": "Practitioner", "name": [{"family": "Else"}]})
    r = await client.post("Appointment", json=appointment(
        patient_ref=pat, actors=[f"Practitioner/{other['id']}", room], start=29, end=40))
    assert r.status_code == 409
    await create(client, appointment(patient_ref=pat, actors=[doc, room], start=30, end=60))


async def test_cancelled_and_proposed_appointments_do_not_block(client: httpx.AsyncClient) -> None:
    pat, doc, _ = await setup(client)
    first = await create(client, appointment(patient_ref=pat, actors=[doc], start=0, end=30))
    await create(client, appointment(patient_ref=pat, actors=[doc], start=0, end=30,
                                     status="proposed"))
    cancelled = {**first, "status": "cancelled"}
    r = await client.put(f"Appointment/{first['id']}", json=cancelled)
    assert r.status_code == 200, r.text
    await create(client, appointment(patient_ref=pat, actors=[doc], start=10, end=20))
    # Re-booking the cancelled one now overlaps the new booking.
    r = await client.put(f"Appointment/{first['id']}", json={**first, "status": "booked"})
    assert r.status_code == 409


async def test_updating_an_appointment_does_not_conflict_with_itself(
        client: httpx.AsyncClient) -> None:
    pat, doc, _ = await setup(client)
    first = await create(client, appointment(patient_ref=pat, actors=[doc], start=0, end=30))
    r = await client.put(f"Appointment/{first['id']}",
                         json={**first, "status": "arrived", "end": at(40)})
    assert r.status_code == 200, r.text


async def test_booking_without_times_is_422(client: httpx.AsyncClient) -> None:
    pat, doc, _ = await setup(client)
    body = appointment(patient_ref=pat, actors=[doc], start=0, end=30)
    del body["end"]
    r = await client.post("Appointment", json=body)
    assert r.status_code == 422
    assert "Appointment.end" in r.json()["issue"][0]["expression"]


async def test_racing_bookings_only_one_wins(client: httpx.AsyncClient) -> None:
    pat, doc, _ = await setup(client)
    n = 8
    results = await asyncio.gather(*(
        client.post("Appointment", json=appointment(patient_ref=pat, actors=[doc], start=i,
                                                    end=i + 30)) for i in range(n)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * (n - 1)
    r = await client.get("Appointment", params={"actor": doc, "status": "booked"})
    assert r.json()["total"] == 1


async def test_racing_bookings_in_transactions_only_one_wins(client: httpx.AsyncClient) -> None:
    pat, doc, _ = await setup(client)

    def bundle(i: int) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [{
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": appointment(patient_ref=pat, actors=[doc], start=i, end=i + 30),
            "request": {"method": "POST", "url": "Appointment"}}]}

    results = await asyncio.gather(*(client.post("", json=bundle(i)) for i in range(5)))
    assert sorted(r.status_code for r in results) == [200, 409, 409, 409, 409]


async def test_two_overlapping_bookings_in_one_transaction_are_refused(
        client: httpx.AsyncClient) -> None:
    pat, doc, _ = await setup(client)
    entries = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": appointment(patient_ref=pat, actors=[doc], start=s, end=s + 30),
                "request": {"method": "POST", "url": "Appointment"}} for s in (0, 20)]
    r = await client.post("", json={"resourceType": "Bundle", "type": "transaction",
                                    "entry": entries})
    assert r.status_code == 409
    r = await client.get("Appointment", params={"actor": doc})
    assert r.json()["total"] == 0


async def test_booking_creates_one_draft_invoice_and_cancel_cancels_it(
        client: httpx.AsyncClient) -> None:
    pat, doc, _ = await setup(client)
    appt = await create(client, appointment(patient_ref=pat, actors=[doc], start=0, end=30))
    invoices = await bill_invoices(client, appt["id"])
    assert len(invoices) == 1
    invoice = invoices[0]
    assert invoice["status"] == "draft"
    assert invoice["subject"] == {"reference": pat}
    assert {"url": "https://fhir-rcm-server.org/StructureDefinition/invoice-appointment",
            "valueReference": {"reference": f"Appointment/{appt['id']}"}} in invoice["extension"]
    # Checking in, then updating again, keeps the one Invoice untouched.
    for status in ("arrived", "checked-in"):
        appt = (await client.put(f"Appointment/{appt['id']}",
                                 json={**appt, "status": status})).json()
    again = await bill_invoices(client, appt["id"])
    assert [i["meta"]["versionId"] for i in again] == ["1"]
    r = await client.put(f"Appointment/{appt['id']}", json={**appt, "status": "cancelled"})
    assert r.status_code == 200
    [cancelled] = await bill_invoices(client, appt["id"])
    assert cancelled["id"] == invoice["id"]
    assert cancelled["status"] == "cancelled"


async def test_noshow_keeps_the_draft_invoice(client: httpx.AsyncClient) -> None:
    pat, doc, _ = await setup(client)
    appt = await create(client, appointment(patient_ref=pat, actors=[doc], start=0, end=30))
    r = await client.put(f"Appointment/{appt['id']}", json={**appt, "status": "noshow"})
    assert r.status_code == 200
    [invoice] = await bill_invoices(client, appt["id"])
    assert invoice["status"] == "draft"
    assert invoice["meta"]["versionId"] == "1"


async def test_booking_in_a_transaction_writes_the_invoice_with_it(
        client: httpx.AsyncClient) -> None:
    pat, doc, _ = await setup(client)
    r = await client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:7d0b6a7e-3c1f-4a55-8d55-0c7e8f0a1b2c",
        "resource": appointment(patient_ref=pat, actors=[doc], start=0, end=30),
        "request": {"method": "POST", "url": "Appointment"}}]})
    assert r.status_code == 200, r.text
    appt_id = r.json()["entry"][0]["response"]["location"].split("/")[-3]
    [invoice] = await bill_invoices(client, appt_id)
    assert invoice["status"] == "draft"
