"""patient/ scopes: every interaction kind with the own patient and with another patient.

A token for patient a (``patient/*.cruds``) must see and change only a's compartment
(plus the non-compartment types it names, read-only), through every path: read, vread,
search, compartment search, _include, _revinclude, chains, _has, history, conditional
interactions, transaction and batch. Expectations come from the data the test created.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.auth.world import FHIR_JSON, IDS, World, build, ids, observation
from tests.support.store import ClientFor


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    return await build(client)


@pytest.fixture
async def pa(client_for: ClientFor, world: World) -> httpx.AsyncClient:
    """Patient a's app: patient/*.cruds in a's context."""
    return await client_for("patient/*.cruds", patient=world.patients["a"])


def own(w: World, key: str = "a") -> set[str]:
    return {f"Observation/{o}" for o in w.observations[key]}


async def test_read_own_and_other(pa: httpx.AsyncClient, world: World) -> None:
    for key, status in (("a", 200), ("b", 404)):
        assert (await pa.get(f"Patient/{world.patients[key]}")).status_code == status
        assert (await pa.get(f"Encounter/{world.encounters[key]}")).status_code == status
        for oid in world.observations[key]:
            resp = await pa.get(f"Observation/{oid}")
            assert resp.status_code == status
            if status == 404:  # the same answer as for an id that does not exist
                absent = await pa.get("Observation/no-such-id")
                assert resp.json()["issue"][0]["code"] == absent.json()["issue"][0]["code"]
    # Types outside the compartment, named by the scope (here *): read-only, unconfined.
    assert (await pa.get(f"Practitioner/{world.practitioner}")).status_code == 200
    assert (await pa.get(f"Organization/{world.organization}")).status_code == 200


async def test_vread_own_and_other(pa: httpx.AsyncClient, world: World) -> None:
    for key, status in (("a", 200), ("b", 404)):
        oid = world.observations[key][0]
        assert (await pa.get(f"Observation/{oid}/_history/1")).status_code == status


async def test_search_is_confined_with_total(pa: httpx.AsyncClient, world: World) -> None:
    bundle = (await pa.get("Observation")).json()
    assert ids(bundle) == own(world)
    assert bundle["total"] == len(own(world))
    count = (await pa.get("Observation", params={"_summary": "count"})).json()
    assert count["total"] == len(own(world))
    patients = (await pa.get("Patient")).json()
    assert ids(patients) == {f"Patient/{world.patients['a']}"}
    # An explicit search for b's resources finds nothing.
    by_subject = (await pa.get("Observation", params={
        "subject": f"Patient/{world.patients['b']}"})).json()
    assert ids(by_subject) == set() and by_subject["total"] == 0
    by_id = (await pa.get("Observation", params={"_id": world.observations["b"][0]})).json()
    assert by_id["total"] == 0


async def test_search_post_is_confined(pa: httpx.AsyncClient, world: World) -> None:
    resp = await pa.post("Observation/_search", data={"code": "http://loinc.org|2345-7"})
    assert ids(resp.json()) == own(world)


async def test_compartment_search(pa: httpx.AsyncClient, world: World) -> None:
    mine = (await pa.get(f"Patient/{world.patients['a']}/Observation")).json()
    assert ids(mine) == own(world)
    theirs = (await pa.get(f"Patient/{world.patients['b']}/Observation")).json()
    assert ids(theirs) == set() and theirs["total"] == 0


async def test_include_and_revinclude(pa: httpx.AsyncClient, client_for: ClientFor,
                                      world: World) -> None:
    inc = (await pa.get("Observation", params={"_include": "Observation:subject"})).json()
    assert ids(inc, "include") == {f"Patient/{world.patients['a']}"}
    # Encounter search including the Patient; revinclude of Observations on Patients.
    rev = (await pa.get("Patient", params={"_revinclude": "Observation:subject"})).json()
    assert ids(rev, "include") == own(world)
    # _include:iterate across Encounter -> Patient -> (revinclude) never reaches b.
    it = (await pa.get("Encounter", params={"_include": "Encounter:subject",
                                            "_revinclude:iterate": "Observation:patient"})).json()
    assert all(world.patients["b"] not in ref and all(o not in ref for o in
               world.observations["b"]) for ref in ids(it, None))
    # A non-compartment type is included when a scope covers it...
    perf = (await pa.get("Observation", params={"_include": "Observation:performer"})).json()
    assert ids(perf, "include") == {f"Practitioner/{world.practitioner}"}
    # ...and left out when none does.
    narrow = await client_for("patient/Observation.rs", patient=world.patients["a"])
    perf2 = (await narrow.get("Observation", params={
        "_include": "Observation:performer"})).json()
    assert ids(perf2) == own(world) and ids(perf2, "include") == set()
    subj = (await narrow.get("Observation", params={"_include": "Observation:subject"})).json()
    assert ids(subj, "include") == set()


async def test_chain_and_has(pa: httpx.AsyncClient, world: World) -> None:
    theirs = (await pa.get("Observation", params={"subject.name": world.family["b"]})).json()
    assert ids(theirs) == set() and theirs["total"] == 0
    mine = (await pa.get("Observation", params={"subject.name": world.family["a"]})).json()
    assert ids(mine) == own(world)
    has = (await pa.get("Patient", params={"_has:Observation:subject:code": "2345-7"})).json()
    assert ids(has) == {f"Patient/{world.patients['a']}"}
    # _has reaching b's Observation by its identifier finds nothing.
    b_ident = world.obs_identifier[world.observations["b"][0]]
    has_b = (await pa.get("Patient", params={
        "_has:Observation:subject:identifier": f"{IDS}|{b_ident}"})).json()
    assert has_b["total"] == 0


def _history_refs(bundle: dict[str, Any]) -> set[str]:
    return {e["fullUrl"].split("/fhir/", 1)[1] for e in bundle["entry"]}


async def test_history_instance_type_system(pa: httpx.AsyncClient, client: httpx.AsyncClient,
                                            world: World) -> None:
    oa = world.observations["a"][0]
    ob = world.observations["b"][0]
    for oid in (oa, ob):  # a second version of each
        body = (await client.get(f"Observation/{oid}")).json()
        body["status"] = "amended"
        assert (await client.put(f"Observation/{oid}", json=body,
                                 headers=FHIR_JSON)).status_code == 200
    mine = (await pa.get(f"Observation/{oa}/_history")).json()
    assert len(mine["entry"]) == 2 and mine["total"] == 2
    assert (await pa.get(f"Observation/{ob}/_history")).status_code == 404
    typed = (await pa.get("Observation/_history")).json()
    assert _history_refs(typed) == own(world)
    assert typed["total"] == len(own(world)) + 1  # each created once, oa updated once
    system = (await pa.get("_history")).json()
    refs = _history_refs(system)
    visible = {*own(world), f"Patient/{world.patients['a']}",
               f"Encounter/{world.encounters['a']}", f"Practitioner/{world.practitioner}",
               f"Organization/{world.organization}"}
    assert refs == visible
    # Paging through a confined history never reaches b either.
    paged: set[str] = set()
    url: str | None = "_history?_count=2"
    while url:
        page = (await pa.get(url)).json()
        paged |= _history_refs(page)
        url = next((link["url"].split("/fhir/", 1)[1] for link in page["link"]
                    if link["relation"] == "next"), None)
    assert paged == visible


async def test_create_own_and_other(pa: httpx.AsyncClient, client: httpx.AsyncClient,
                                    world: World) -> None:
    ok = await pa.post("Observation", json=observation(world.patients["a"]), headers=FHIR_JSON)
    assert ok.status_code == 201
    before = (await client.get("Observation", params={"_summary": "count"})).json()["total"]
    denied = await pa.post("Observation", json=observation(world.patients["b"]),
                           headers=FHIR_JSON)
    assert denied.status_code == 403
    assert denied.json()["resourceType"] == "OperationOutcome"
    after = (await client.get("Observation", params={"_summary": "count"})).json()["total"]
    assert after == before
    # Types outside the compartment cannot be written with patient/ scopes.
    org = await pa.post("Organization", json={"resourceType": "Organization", "name": "X"},
                        headers=FHIR_JSON)
    assert org.status_code == 403


async def test_update_patch_delete(pa: httpx.AsyncClient, client: httpx.AsyncClient,
                                   world: World) -> None:
    oa, ob = world.observations["a"][0], world.observations["b"][0]
    mine = (await pa.get(f"Observation/{oa}")).json()
    mine["status"] = "amended"
    assert (await pa.put(f"Observation/{oa}", json=mine, headers=FHIR_JSON)).status_code == 200
    theirs = observation(world.patients["b"])
    theirs["id"] = ob
    assert (await pa.put(f"Observation/{ob}", json=theirs, headers=FHIR_JSON)).status_code == 404
    # Moving an own resource to another patient is refused.
    moved = {**mine, "subject": {"reference": f"Patient/{world.patients['b']}"}}
    assert (await pa.put(f"Observation/{oa}", json=moved, headers=FHIR_JSON)).status_code == 403
    patch = [{"op": "replace", "path": "/status", "value": "corrected"}]
    headers = {"Content-Type": "application/json-patch+json"}
    assert (await pa.patch(f"Observation/{oa}", json=patch, headers=headers)).status_code == 200
    assert (await pa.patch(f"Observation/{ob}", json=patch, headers=headers)).status_code == 404
    assert (await pa.delete(f"Observation/{ob}")).status_code == 404
    assert (await pa.delete(f"Observation/{oa}")).status_code == 200
    # b's Observation is untouched: version 1, final.
    kept = (await client.get(f"Observation/{ob}")).json()
    assert kept["meta"]["versionId"] == "1" and kept["status"] == "final"


async def test_conditional_interactions_do_not_reach_other(
        pa: httpx.AsyncClient, client: httpx.AsyncClient, world: World) -> None:
    ob = world.observations["b"][0]
    b_ident = world.obs_identifier[ob]
    query = f"identifier={IDS}|{b_ident}"
    # Conditional create: b's match is invisible, so a new Observation (for a) is created.
    body = observation(world.patients["a"], identifier=b_ident)
    made = await pa.post("Observation", json=body, headers={**FHIR_JSON,
                                                            "If-None-Exist": query})
    assert made.status_code == 201 and made.json()["id"] != ob
    # Conditional update with b's identifier... now matches only a's new one.
    upd = await pa.put(f"Observation?{query}", json={**body, "status": "amended"},
                       headers=FHIR_JSON)
    assert upd.status_code == 200 and upd.json()["id"] == made.json()["id"]
    # Conditional delete: deletes a's, never b's.
    assert (await pa.delete(f"Observation?{query}")).status_code == 200
    assert (await pa.delete(f"Observation?{query}")).status_code == 200  # nothing left
    kept = await client.get(f"Observation/{ob}")
    assert kept.status_code == 200 and kept.json()["meta"]["versionId"] == "1"


def _bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def _post(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "POST",
                                              "url": resource["resourceType"]}}


def _get(url: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url}}


async def test_transaction_with_other_patient_fails_whole(
        pa: httpx.AsyncClient, client: httpx.AsyncClient, world: World) -> None:
    before = (await client.get("Observation", params={"_summary": "count"})).json()["total"]
    bad = _bundle("transaction", [_post(observation(world.patients["a"])),
                                  _post(observation(world.patients["b"]))])
    resp = await pa.post("", json=bad, headers=FHIR_JSON)
    assert resp.status_code == 403
    after = (await client.get("Observation", params={"_summary": "count"})).json()["total"]
    assert after == before
    good = _bundle("transaction", [_post(observation(world.patients["a"])),
                                   _get(f"Observation/{world.observations['b'][0]}"),
                                   _get("Observation")])
    ok = await pa.post("", json=good, headers=FHIR_JSON)
    assert ok.status_code == 200
    entries = ok.json()["entry"]
    assert entries[0]["response"]["status"].startswith("201")
    assert entries[1]["response"]["status"].startswith("404")
    search = entries[2]["resource"]
    created_id = entries[0]["response"]["location"].split("/")[-3]
    assert ids(search) == own(world) | {f"Observation/{created_id}"}


async def test_transaction_without_scope_is_403(client_for: ClientFor, world: World) -> None:
    reader = await client_for("patient/Observation.rs", patient=world.patients["a"])
    tx = _bundle("transaction", [_post(observation(world.patients["a"]))])
    resp = await reader.post("", json=tx, headers=FHIR_JSON)
    assert resp.status_code == 403
    assert resp.json()["issue"][0]["expression"] == ["Bundle.entry[0]"]


async def test_batch_answers_per_entry(pa: httpx.AsyncClient, client_for: ClientFor,
                                       world: World) -> None:
    batch = _bundle("batch", [_post(observation(world.patients["a"])),
                              _post(observation(world.patients["b"])),
                              _get(f"Observation/{world.observations['a'][0]}"),
                              _get(f"Observation/{world.observations['b'][0]}"),
                              _get(f"Observation?subject=Patient/{world.patients['b']}")])
    resp = await pa.post("", json=batch, headers=FHIR_JSON)
    assert resp.status_code == 200
    statuses = [e["response"]["status"].split()[0] for e in resp.json()["entry"]]
    assert statuses == ["201", "403", "200", "404", "200"]
    assert ids(resp.json()["entry"][4]["resource"]) == set()
    reader = await client_for("patient/Observation.rs", patient=world.patients["a"])
    mixed = _bundle("batch", [_post(observation(world.patients["a"])),
                              _get(f"Observation/{world.observations['a'][0]}"),
                              _get(f"Encounter/{world.encounters['a']}")])
    statuses = [e["response"]["status"].split()[0]
                for e in (await reader.post("", json=mixed, headers=FHIR_JSON)).json()["entry"]]
    assert statuses == ["403", "200", "403"]


async def test_patient_scope_without_launch_patient_grants_nothing(
        client_for: ClientFor, world: World) -> None:
    lost = await client_for("patient/*.rs")
    assert (await lost.get(f"Observation/{world.observations['a'][0]}")).status_code == 403
