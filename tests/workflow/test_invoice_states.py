"""An Invoice's states over HTTP (revenue/states.py): a booking's draft follows the
appointment (draft -> cancelled -> draft again), and a bill not issued takes no payment:
the client's request is answered 422 business-rule, never 500, and nothing is written."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import patient
from tests.workflow.helpers import post

BILL_KEY = "urn:fhir-rcm-server:bill"


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(resource["resourceType"], json=resource)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def the_invoice(client: httpx.AsyncClient, appointment_id: str) -> dict[str, Any]:
    r = await client.get("Invoice", params={"identifier": f"{BILL_KEY}|Appointment/"
                                                          f"{appointment_id}"})
    assert r.status_code == 200, r.text
    [invoice] = [e["resource"] for e in r.json().get("entry", [])]
    return invoice


async def pay(client: httpx.AsyncClient, invoice_id: str) -> httpx.Response:
    return await post(client, f"Invoice/{invoice_id}/$record-payment", {
        "resourceType": "Parameters", "parameter": [
            {"name": "amount", "valueMoney": {"value": 10, "currency": "USD"}},
            {"name": "method", "valueCode": "CASH"}]})


async def assert_refused(client: httpx.AsyncClient, invoice: dict[str, Any]) -> None:
    r = await pay(client, invoice["id"])
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert r.json()["resourceType"] == "OperationOutcome"
    assert issue["code"] == "business-rule" and issue["expression"] == ["Invoice.status"]
    assert invoice["status"] in issue["diagnostics"]
    after = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert after["meta"]["versionId"] == invoice["meta"]["versionId"]
    assert (await client.get("PaymentReconciliation", params={"_summary": "count"})
            ).json()["total"] == 0


async def test_a_booking_invoice_follows_its_appointment_and_takes_no_payment(
        client: httpx.AsyncClient) -> None:
    pat = await create(client, patient())
    booked = await create(client, {
        "resourceType": "Appointment", "status": "booked", "start": "2026-12-01T09:00:00Z",
        "end": "2026-12-01T09:30:00Z",
        "participant": [{"actor": {"reference": f"Patient/{pat['id']}"},
                         "status": "accepted"}]})
    draft = await the_invoice(client, booked["id"])
    assert draft["status"] == "draft"
    await assert_refused(client, draft)

    r = await client.put(f"Appointment/{booked['id']}", json={**booked, "status": "cancelled"})
    assert r.status_code == 200, r.text
    cancelled = await the_invoice(client, booked["id"])
    assert (cancelled["id"], cancelled["status"]) == (draft["id"], "cancelled")
    await assert_refused(client, cancelled)

    r = await client.put(f"Appointment/{booked['id']}", json={**booked, "status": "booked"})
    assert r.status_code == 200, r.text
    again = await the_invoice(client, booked["id"])
    assert (again["id"], again["status"]) == (draft["id"], "draft")
    assert int(again["meta"]["versionId"]) == int(cancelled["meta"]["versionId"]) + 1
