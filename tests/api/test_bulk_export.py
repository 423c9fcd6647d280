"""System-level Bulk Data export: kick-off, status, files; who may see them."""

from __future__ import annotations

import asyncio
import json

import httpx

from fhir_server.main import create_app
from tests.factories import patient
from tests.support.store import ClientFor, Store, fhir_client, make_settings, mint

ASYNC = {"Prefer": "respond-async"}


async def finished(http: httpx.AsyncClient, status_url: str) -> httpx.Response:
    for _ in range(300):
        r = await http.get(status_url)
        if r.status_code != 202:
            return r
        await asyncio.sleep(0.05)
    raise AssertionError("the export did not finish")


async def test_export_since_and_files(client: httpx.AsyncClient) -> None:
    made = [(await client.post("Patient", json=patient(family=f"Bulk{n}"))).json()
            for n in range(3)]
    r = await client.get("$export", params={"_type": "Patient"}, headers=ASYNC)
    assert r.status_code == 202, r.text
    done = await finished(client, r.headers["content-location"])
    assert done.status_code == 200, done.text
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True
    [output] = manifest["output"]
    assert output["type"] == "Patient"
    lines = (await client.get(output["url"], headers={"Accept": "application/fhir+ndjson"}))
    assert lines.headers["content-type"].startswith("application/fhir+ndjson")
    exported = [json.loads(line) for line in lines.text.splitlines()]
    assert sorted(p["id"] for p in exported) == sorted(p["id"] for p in made)

    changed = {**made[0], "gender": "female"}
    assert (await client.put(f"Patient/{made[0]['id']}", json=changed)).status_code == 200
    r = await client.get("$export", params={"_type": "Patient",
                                            "_since": manifest["transactionTime"]},
                         headers=ASYNC)
    again = (await finished(client, r.headers["content-location"])).json()
    text = (await client.get(again["output"][0]["url"])).text
    assert [json.loads(line)["id"] for line in text.splitlines()] == [made[0]["id"]]


async def test_export_is_the_starting_clients_own(client: httpx.AsyncClient,
                                                  client_for: ClientFor) -> None:
    await client.post("Patient", json=patient())
    assert (await client.get("$export", params={"_type": "Patient"})).status_code == 400
    r = await client.get("$export", params={"_type": "Patient"}, headers=ASYNC)
    status_url = r.headers["content-location"]
    manifest = (await finished(client, status_url)).json()
    other = await client_for("system/Patient.rs", client_id="another-app")
    assert (await other.get(status_url)).status_code == 404
    assert (await other.get(manifest["output"][0]["url"])).status_code == 404
    no_scope = await client_for("system/Observation.rs")
    assert (await no_scope.get("$export", params={"_type": "Patient"},
                               headers=ASYNC)).status_code == 403
    app = await client_for("patient/*.rs", patient="p1")
    assert (await app.get("$export", params={"_type": "Patient"},
                          headers=ASYNC)).status_code == 403
    assert (await client.delete(status_url)).status_code == 202
    assert (await client.get(status_url)).status_code == 404


async def test_export_without_type_is_every_type_the_token_may_search(
        client: httpx.AsyncClient, client_for: ClientFor) -> None:
    """Bulk Data: without _type, all resources within the client's authorization."""
    made: dict[str, set[str]] = {}
    for resource in [patient(family="Everyone"),
                     {"resourceType": "Organization", "name": "Clinic"},
                     {"resourceType": "Observation", "status": "final",
                      "code": {"text": "weight"}}]:
        r = await client.post(resource["resourceType"], json=resource)
        made.setdefault(resource["resourceType"], set()).add(r.json()["id"])

    async def exported(http: httpx.AsyncClient) -> dict[str, set[str]]:
        r = await http.get("$export", headers=ASYNC)
        assert r.status_code == 202, r.text
        manifest = (await finished(http, r.headers["content-location"])).json()
        assert manifest["error"] == [], manifest
        out = {}
        for output in manifest["output"]:
            text = (await http.get(output["url"])).text
            out[output["type"]] = {json.loads(line)["id"] for line in text.splitlines()}
        return out

    everything = await exported(client)
    for type_, ids in made.items():
        assert ids <= everything[type_], type_
    two = await client_for("system/Patient.rs system/Observation.rs")
    assert set(await exported(two)) == {"Patient", "Observation"}



async def test_a_job_running_at_shutdown_is_recorded_failed(store: Store) -> None:
    """Found by bench/fuzz.py: a job still running when the server stopped wrote to the
    closed database (an error in the log) and stayed ``running`` until it expired."""
    app = create_app(make_settings(store))
    async with app.router.lifespan_context(app), fhir_client(app, await mint(app)) as http:
        for n in range(20):
            await http.post("Patient", json=patient(family=f"Stop{n}"))
        kick = await http.get("$export", headers=ASYNC)  # every type: many queries
        assert kick.status_code == 202, kick.text
    again = create_app(make_settings(store))
    async with again.router.lifespan_context(again), fhir_client(again, await mint(again)) as http:
        resp = await http.get(kick.headers["content-location"])
    assert resp.status_code == 500, resp.text  # Bulk Data: a failed job's status is an error
    assert "server stopped" in resp.json()["issue"][0]["diagnostics"]
