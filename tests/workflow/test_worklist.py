"""The billing worker and its worklist over REST: a visit finishes whatever its billing
needs, what cannot be billed waits as one failed bill-visit Task (searchable, and updated
with each new reason), and a retry bills it once; an event handed twice, or to two workers
at once, still makes one Invoice."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.events.event import Event
from fhir_server.events.topics import topics_of
from fhir_server.operations.billing_worker import LEASE_WAIT, BillingWorker
from fhir_server.storage.repository import Repository
from tests.factories import PRICES, SERVICE_SYSTEM, charge_item_definition
from tests.workflow.helpers import CLINIC, WORKLIST, create, found_eventually, post
from tests.workflow.test_billing import YEAR, insured_patient

BILL_VISIT = f"{WORKLIST}|bill-visit"


def charge(patient: str, encounter: str, code: str, quantity: int = 1) -> dict[str, Any]:
    return {"resourceType": "ChargeItem", "status": "billable",
            "code": {"coding": [{"system": SERVICE_SYSTEM, "code": code}]},
            "subject": {"reference": patient}, "quantity": {"value": quantity},
            "context": {"reference": encounter}}


async def visit(client: httpx.AsyncClient, patient: str,
                charges: dict[str, int]) -> dict[str, Any]:
    """An in-progress Encounter of ``patient`` with a ChargeItem per code (and quantity)."""
    enc = await create(client, {
        "resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
        "subject": {"reference": patient}, "period": {"start": f"{YEAR}-03-02"}})
    for code, quantity in charges.items():
        await create(client, charge(patient, f"Encounter/{enc['id']}", code, quantity))
    return enc


async def test_a_visit_finishes_without_billing_config_and_its_task_is_worked(
        client: httpx.AsyncClient) -> None:
    await create(client, charge_item_definition("OPD001"))
    patient, _, _ = await insured_patient(client)
    charges = {"OPD001": 1, "LAB025": 2}  # LAB025 has no price yet
    enc = await visit(client, patient, charges)
    r = await client.put(f"Encounter/{enc['id']}", json={**enc, "status": "finished"})
    assert r.status_code == 200, r.text  # the visit is recorded, billed or not
    [task] = await found_eventually(client, "Task", {"code": BILL_VISIT, "status": "failed",
                                                     "patient": patient})
    assert "LAB025" in task["statusReason"]["text"]
    assert task["focus"]["reference"] == f"Encounter/{enc['id']}"
    # Open Tasks by age: authored on or after the day it was made, and by _lastUpdated.
    day = task["authoredOn"][:10]
    for params in ({"authored-on": f"ge{day}"}, {"_lastUpdated": f"ge{day}"},
                   {"patient": patient, "status": "failed,requested,on-hold"}):
        r = await client.get("Task", params={"code": BILL_VISIT, **params})
        assert [e["resource"]["id"] for e in r.json()["entry"]] == [task["id"]]
    assert (await client.get("Task", params={"authored-on": "lt2000-01-01"})).json()[
        "total"] == 0

    # The price is added; the retry fails on the next thing to fix, on the same Task.
    await create(client, charge_item_definition("LAB025"))
    r = await post(client, f"Task/{task['id']}/$retry", {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["id"] == task["id"] and again["status"] == "failed"
    assert "FHIR_BILLING_PROVIDER" in again["statusReason"]["text"]
    assert (await client.get("Task")).json()["total"] == 1

    # The Encounter names its provider; the Task set to requested: the worker bills it.
    finished = (await client.get(f"Encounter/{enc['id']}")).json()
    r = await client.put(f"Encounter/{enc['id']}", json={
        **finished, "serviceProvider": {"reference": "Organization/clinic"}})
    assert r.status_code == 200, r.text
    r = await client.put(f"Task/{task['id']}", json={**again, "status": "requested"})
    assert r.status_code == 200, r.text
    [done] = await found_eventually(client, "Task", {"_id": task["id"], "status": "completed"})
    [invoice] = await found_eventually(client, "Invoice", {"subject": patient,
                                                           "status": "issued"})
    [claim] = await found_eventually(client, "Claim", {"patient": patient})
    expected = sum((PRICES[code][1] * quantity for code, quantity in charges.items()),
                   Decimal(0))
    assert Decimal(str(invoice["totalGross"]["value"])) == expected
    assert claim["provider"] == {"reference": "Organization/clinic"}
    assert {o["valueReference"]["reference"] for o in done["output"]} == {
        f"Invoice/{invoice['id']}", f"Claim/{claim['id']}"}


async def test_a_visit_created_finished_is_201(client: httpx.AsyncClient) -> None:
    patient, _, _ = await insured_patient(client)
    r = await post(client, "Encounter", {
        "resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
        "subject": {"reference": patient}})
    assert r.status_code == 201, r.text


async def test_the_billing_role_reads_and_retries_tasks(app: FastAPI,
                                                        client: httpx.AsyncClient,
                                                        client_for: Any) -> None:
    patient, _, _ = await insured_patient(client)
    enc = await visit(client, patient, {"NOPE7": 1})
    await client.put(f"Encounter/{enc['id']}", json={**enc, "status": "finished"})
    [task] = await found_eventually(client, "Task", {"code": BILL_VISIT})
    billing = await client_for("user/*.cruds", username="bo", role="billing")
    r = await billing.get("Task", params={"code": BILL_VISIT, "status": "failed"})
    assert r.status_code == 200 and r.json()["total"] == 1
    r = await post(billing, f"Task/{task['id']}/$retry", {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    assert "NOPE7" in r.json()["statusReason"]["text"]
    front = await client_for("user/*.cruds", username="fd", role="front-desk")
    r = await post(front, f"Task/{task['id']}/$retry", {"resourceType": "Parameters"})
    assert r.status_code == 403


async def finished_event(repo: Repository, encounter_id: str) -> Event:
    changes = await repo.events(after=0, limit=1000)
    for change in changes:
        topics = await topics_of(repo, change)
        if change.id_ == encounter_id and "encounter-finished" in topics:
            return Event.of(change, topics)
    raise AssertionError("no encounter-finished event")


# The app's own worker is off: the test hands the events to workers of its own.
OWN_WORKERS = {**CLINIC, "fhir_bill_on_finish": False}


@pytest.mark.parametrize("settings_overrides", [OWN_WORKERS])
@pytest.mark.parametrize("way", ["twice", "racing"])
async def test_an_event_handed_twice_or_to_two_workers_bills_once(
        app: FastAPI, client: httpx.AsyncClient, way: str) -> None:
    for code in PRICES:
        await create(client, charge_item_definition(code))
    patient, _, _ = await insured_patient(client)
    charges = {"OPD001": 1, "LAB025": 3}
    enc = await visit(client, patient, charges)
    r = await client.put(f"Encounter/{enc['id']}", json={**enc, "status": "finished"})
    assert r.status_code == 200, r.text
    repo, settings = app.state.repo, app.state.settings
    event = await finished_event(repo, enc["id"])
    first = BillingWorker(repo=repo, settings=settings)
    if way == "twice":
        assert await first.deliver([event, event]) == 2
        assert await first.deliver([event]) == 1
    else:
        second = BillingWorker(repo=repo, settings=settings)
        done = await asyncio.gather(first.deliver([event]), second.deliver([event]))
        assert done == [1, 1]
    r = await client.get("Invoice", params={"subject": patient})
    [invoice] = [e["resource"] for e in r.json()["entry"]]
    assert invoice["status"] == "issued"
    expected = sum((PRICES[code][1] * quantity for code, quantity in charges.items()),
                   Decimal(0))
    assert Decimal(str(invoice["totalGross"]["value"])) == expected
    assert (await client.get("Claim", params={"patient": patient})).json()["total"] == 1
    assert (await client.get("Task")).json()["total"] == 0


@pytest.mark.parametrize("settings_overrides", [OWN_WORKERS])
async def test_a_transient_fault_is_retried_and_makes_no_task(
        app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fhir_server.billing")
    await create(client, charge_item_definition("OPD001"))
    patient, _, _ = await insured_patient(client)
    enc = await visit(client, patient, {"OPD001": 1})
    r = await client.put(f"Encounter/{enc['id']}", json={**enc, "status": "finished"})
    assert r.status_code == 200, r.text
    repo, settings = app.state.repo, app.state.settings
    event = await finished_event(repo, enc["id"])
    worker = BillingWorker(repo=repo, settings=settings)
    # Another process holds the visit's bill lease for longer than the worker waits: its
    # first try fails, a later one (after the lease is let go) bills the visit.
    held = asyncio.Event()

    async def other_process() -> None:
        async with repo.locks.hold([f"bill:Encounter/{enc['id']}"]):
            held.set()
            await asyncio.sleep(LEASE_WAIT + 0.5)

    holding = asyncio.create_task(other_process())  # its own context: its own lease
    await held.wait()
    delivering = asyncio.create_task(worker.deliver([event]))
    await holding
    assert not delivering.done()
    assert await delivering == 1
    assert any("billing retry" in r.getMessage() and "LockBusy" in r.getMessage()
               for r in caplog.records)
    assert (await client.get("Invoice", params={"subject": patient})).json()["total"] == 1
    assert (await client.get("Task")).json()["total"] == 0


async def test_a_notify_patient_task_without_a_channel_is_not_set_to_requested_nor_retried(
        client: httpx.AsyncClient) -> None:
    # No notification channel is configured here: nothing could resend the message.
    r = await post(client, "Task", {
        "resourceType": "Task", "status": "failed", "intent": "order",
        "code": {"coding": [{"system": "https://fhir-rcm-server.org/CodeSystem/worklist",
                             "code": "notify-patient"}]},
        "focus": {"reference": "Communication/gone"}})
    assert r.status_code == 201, r.text
    task = r.json()
    r = await client.put(f"Task/{task['id']}", json={**task, "status": "requested"})
    assert r.status_code == 422, r.text
    [issue] = r.json()["issue"]
    assert issue["code"] == "business-rule" and issue["expression"] == ["Task.status"]
    assert "FHIR_SMTP_URL" in issue["diagnostics"] and "cancelled" in issue["diagnostics"]
    r = await client.post(f"Task/{task['id']}/$retry", json={"resourceType": "Parameters"})
    assert r.status_code == 422 and r.json()["issue"] == [issue], r.text
    assert (await client.get(f"Task/{task['id']}")).json()["status"] == "failed"
    r = await client.put(f"Task/{task['id']}", json={**task, "status": "cancelled"})
    assert r.status_code == 200, r.text
