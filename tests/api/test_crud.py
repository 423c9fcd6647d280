"""Create, read, vread, update, delete over HTTP against the real database."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx

from tests.factories import patient, without_meta

FHIR_JSON = "application/fhir+json"


async def create(client: httpx.AsyncClient, resource: dict, **kw: object) -> httpx.Response:
    resp = await client.post(resource["resourceType"], json=resource, **kw)  # type: ignore[arg-type]
    assert resp.status_code == 201, resp.text
    return resp


async def test_create_assigns_id_version_and_headers(client: httpx.AsyncClient) -> None:
    sent = patient(id_="client-chosen")
    resp = await create(client, sent)
    body = resp.json()
    assert body["id"] != "client-chosen"  # a create ignores the client's id
    assert body["meta"]["versionId"] == "1"
    assert resp.headers["etag"] == 'W/"1"'
    assert resp.headers["location"].endswith(f"/Patient/{body['id']}/_history/1")
    assert resp.headers["content-type"].startswith(FHIR_JSON)
    assert "GMT" in resp.headers["last-modified"]
    expected = {k: v for k, v in sent.items() if k != "id"}
    assert {k: v for k, v in without_meta(body).items() if k != "id"} == expected

    read = await client.get(f"Patient/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body
    assert read.headers["etag"] == 'W/"1"'


async def test_values_round_trip_exactly(client: httpx.AsyncClient) -> None:
    text = ('{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
            '"effectiveDateTime":"2024-02-29T10:00:00.120+01:00",'
            '"valueQuantity":{"value":72.50,"unit":"kg"}}')
    resp = await client.post("Observation", content=text,
                             headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 201, resp.text
    read = await client.get(f"Observation/{resp.json()['id']}")
    assert '"value":72.50' in read.text
    assert '"effectiveDateTime":"2024-02-29T10:00:00.120+01:00"' in read.text
    sent = json.loads(text, parse_float=Decimal)
    got = json.loads(read.text, parse_float=Decimal)
    assert without_meta({k: v for k, v in got.items() if k != "id"}) == sent


async def test_update_versions_and_if_match(client: httpx.AsyncClient) -> None:
    created = (await create(client, patient())).json()
    pid = created["id"]
    changed = {**without_meta(created), "gender": "female"}
    resp = await client.put(f"Patient/{pid}", json=changed)
    assert resp.status_code == 200
    assert resp.json()["meta"]["versionId"] == "2"
    assert resp.json()["gender"] == "female"

    stale = await client.put(f"Patient/{pid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    fresh = await client.put(f"Patient/{pid}", json=changed, headers={"If-Match": 'W/"2"'})
    assert fresh.status_code == 200
    assert fresh.headers["etag"] == 'W/"3"'

    v1 = await client.get(f"Patient/{pid}/_history/1")
    assert v1.status_code == 200 and v1.json()["gender"] == "male"
    assert (await client.get(f"Patient/{pid}/_history/9")).status_code == 404


async def test_update_as_create_with_client_id(client: httpx.AsyncClient) -> None:
    resp = await client.put("Patient/front-desk-7", json=patient(id_="front-desk-7"))
    assert resp.status_code == 201
    assert resp.json()["id"] == "front-desk-7"
    assert resp.headers["location"].endswith("/Patient/front-desk-7/_history/1")


async def test_delete_then_gone_and_recreate(client: httpx.AsyncClient) -> None:
    pid = (await create(client, patient())).json()["id"]
    deleted = await client.delete(f"Patient/{pid}")
    assert deleted.status_code == 200
    assert deleted.headers["etag"] == 'W/"2"'
    gone = await client.get(f"Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    again = await client.delete(f"Patient/{pid}")
    assert again.status_code == 200
    assert (await client.get(f"Patient/{pid}/_history/1")).status_code == 200
    assert (await client.get(f"Patient/{pid}/_history/2")).status_code == 410
    revived = await client.put(f"Patient/{pid}", json=patient(id_=pid))
    assert revived.status_code == 201
    assert revived.json()["meta"]["versionId"] == "3"
    assert (await client.delete("Patient/never-was")).status_code == 404


async def test_prefer_return(client: httpx.AsyncClient) -> None:
    minimal = await client.post("Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"]
    outcome = await client.post("Patient", json=patient(),
                                headers={"Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"


async def test_summary_elements_pretty(client: httpx.AsyncClient) -> None:
    sent = {**patient(), "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">P</div>"},
            "contact": [{"name": {"family": "Doe"}}], "maritalStatus": {"text": "M"}}
    pid = (await create(client, sent)).json()["id"]
    summary = (await client.get(f"Patient/{pid}", params={"_summary": "true"})).json()
    assert "name" in summary and "gender" in summary
    assert "contact" not in summary and "text" not in summary and "maritalStatus" not in summary
    assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    data = (await client.get(f"Patient/{pid}", params={"_summary": "data"})).json()
    assert "text" not in data and data["contact"] == sent["contact"]
    text = (await client.get(f"Patient/{pid}", params={"_summary": "text"})).json()
    assert text["text"] == sent["text"] and "name" not in text
    elements = (await client.get(f"Patient/{pid}", params={"_elements": "gender"})).json()
    assert set(elements) == {"resourceType", "id", "meta", "gender"}
    pretty = await client.get(f"Patient/{pid}", params={"_pretty": "true"})
    assert "\n  " in pretty.text
    fmt = await client.get(f"Patient/{pid}", params={"_format": "json"})
    assert fmt.status_code == 200


async def test_conditional_read(client: httpx.AsyncClient) -> None:
    pid = (await create(client, patient())).json()["id"]
    resp = await client.get(f"Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert resp.status_code == 304


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("http://testserver/health")).json()["status"] == "ok"
    assert (await client.get("http://testserver/ready")).status_code == 200
