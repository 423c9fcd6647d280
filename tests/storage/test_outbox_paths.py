"""Every write path appends exactly its events: one per version it wrote, none for a write
that failed. Expected events are computed from what each request sent (and the ids the
server gave), and cross-checked against the versions the system history lists."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from fhir_server.storage.repository import Repository
from tests.factories import (
    appointment,
    bill_parameters,
    charge_item_definition,
    patient,
    service,
)
from tests.support.history import versions_listed
from tests.workflow.helpers import post

Seen = list[tuple[str, int, str]]


def _repo(app: FastAPI) -> Repository:
    repo: Repository = app.state.repo
    return repo


async def _appended(app: FastAPI, mark: int) -> Seen:
    return [(e.reference, e.version, e.action)
            for e in await _repo(app).events(after=mark, limit=1000)]


def _ref(location: str) -> str:
    """``Type/id`` of a response's location (absolute, with its version)."""
    type_, id_ = location.split("/_history")[0].rsplit("/", 2)[-2:]
    return f"{type_}/{id_}"


async def _mark(app: FastAPI) -> int:
    return await _repo(app).last_event()


async def test_rest_interactions(app: FastAPI, client: httpx.AsyncClient) -> None:
    mark = await _mark(app)
    pid = (await client.post("Patient", json=patient(family="Outbox"))).json()["id"]
    ref = f"Patient/{pid}"
    assert (await client.put(ref, json=patient(id_=pid, family="Outbox2"))).status_code == 200
    r = await client.patch(ref, json=[{"op": "replace", "path": "/gender", "value": "female"}],
                           headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert (await client.delete(ref)).status_code in (200, 204)
    assert (await client.put(ref, json=patient(id_=pid, family="Again"))).status_code == 201
    expected = [(ref, 1, "create"), (ref, 2, "update"), (ref, 3, "update"),
                (ref, 4, "delete"), (ref, 5, "create")]
    assert await _appended(app, mark) == expected

    # A read, a search and a refused write add nothing.
    mark = await _mark(app)
    await client.get(ref)
    await client.get("Patient", params={"family": "Again"})
    bad = await client.post("Patient", json={"resourceType": "Patient", "gender": 7})
    assert bad.status_code == 400
    stale = await client.put(ref, json=patient(id_=pid), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert await _appended(app, mark) == []


async def test_conditional_writes(app: FastAPI, client: httpx.AsyncClient) -> None:
    ident = {"system": "urn:test:outbox", "value": "c-1"}
    body = {**patient(family="Cond"), "identifier": [ident]}
    query = f"identifier={ident['system']}|{ident['value']}"
    mark = await _mark(app)
    created = await client.post("Patient", json=body, headers={"If-None-Exist": query})
    assert created.status_code == 201
    pid = created.json()["id"]
    again = await client.post("Patient", json=body, headers={"If-None-Exist": query})
    assert again.status_code == 200  # found: nothing written
    updated = await client.put(f"Patient?{query}", json={**body, "gender": "female"})
    assert updated.status_code == 200 and updated.json()["id"] == pid
    deleted = await client.delete(f"Patient?{query}")
    assert deleted.status_code in (200, 204)
    ref = f"Patient/{pid}"
    assert await _appended(app, mark) == [(ref, 1, "create"), (ref, 2, "update"),
                                          (ref, 3, "delete")]


def _post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource,
                             "request": {"method": "POST", "url": resource["resourceType"]}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


async def test_batch_entries_each_and_a_failed_entry_none(app: FastAPI,
                                                         client: httpx.AsyncClient) -> None:
    mark = await _mark(app)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        _post(patient(family="B1")), _post({"resourceType": "Patient", "gender": 7}),
        _post(patient(family="B2"))]}
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("201") and statuses[2].startswith("201")
    assert not statuses[1].startswith("2")
    refs = [_ref(e["response"]["location"]) for i, e in enumerate(r.json()["entry"])
            if i != 1]
    assert sorted(await _appended(app, mark)) == sorted((ref, 1, "create") for ref in refs)


async def test_a_transaction_all_its_entries_and_a_failed_one_none(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    mark = await _mark(app)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _post(patient(family="T1"), "urn:uuid:0b1c2d3e-0000-4000-8000-000000000001"),
        _post({"resourceType": "Encounter", "status": "planned",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                         "code": "AMB"},
               "subject": {"reference": "urn:uuid:0b1c2d3e-0000-4000-8000-000000000001"}})]}
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    refs = [_ref(e["response"]["location"]) for e in r.json()["entry"]]
    assert sorted(await _appended(app, mark)) == sorted((ref, 1, "create") for ref in refs)

    mark = await _mark(app)
    failing = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _post(patient(family="T2")),
        {"resource": patient(id_=refs[0].split("/")[1], family="T3"),
         "request": {"method": "PUT", "url": refs[0], "ifMatch": 'W/"9"'}}]}
    refused = await client.post("", json=failing)
    assert refused.status_code in (409, 412), refused.text
    assert await _appended(app, mark) == []


async def test_a_rules_side_writes_have_events_too(app: FastAPI,
                                                  client: httpx.AsyncClient) -> None:
    pid = (await client.post("Patient", json=patient(family="Booked"))).json()["id"]
    practitioner = (await client.post("Practitioner", json={
        "resourceType": "Practitioner", "name": [{"family": "Doc"}]})).json()["id"]
    mark = await _mark(app)
    r = await client.post("Appointment", json=appointment(
        f"Patient/{pid}", [f"Practitioner/{practitioner}"], "2026-12-07T09:00:00Z",
        "2026-12-07T09:30:00Z"))
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    # The booking's own bill, written by the Appointment rule in the same commit.
    bills = (await client.get("Invoice", params={"subject": f"Patient/{pid}"})).json()
    invoices = [e["resource"]["id"] for e in bills.get("entry", [])]
    assert len(invoices) == 1
    got = await _appended(app, mark)
    assert sorted(got) == sorted([(f"Appointment/{aid}", 1, "create"),
                                  (f"Invoice/{invoices[0]}", 1, "create")])
    events = await _repo(app).events(after=mark, limit=10)
    assert len({e.at for e in events}) == 1  # one commit


async def test_an_operation_appends_one_event_per_version_it_wrote(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    """$generate-bill writes several resources in one commit: each version it wrote (read
    from the system history before and after) has its event, and nothing else has."""
    await post(client, "ChargeItemDefinition", charge_item_definition("OPD001"))
    pid = (await client.post("Patient", json=patient(family="Billed"))).json()["id"]
    before = await versions_listed(client)
    mark = await _mark(app)
    r = await post(client, "Invoice/$generate-bill", bill_parameters(
        f"Patient/{pid}", [service("OPD001")]))
    assert r.status_code in (200, 201), r.text
    written = await versions_listed(client) - before
    got = await _appended(app, mark)
    assert len(written) >= 1
    assert sorted((ref, v) for ref, v, _ in got) == sorted(written)
    assert {action for _, _, action in got} == {"create"}
