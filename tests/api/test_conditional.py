"""Conditional create, update and delete by identifier and _id."""

from __future__ import annotations

import httpx

from tests.factories import patient

MRN = "http://clinic.example/mrn"


async def test_conditional_create(client: httpx.AsyncClient) -> None:
    first = await client.post("Patient", json=patient(identifier=(MRN, "A1")),
                              headers={"If-None-Exist": f"identifier={MRN}|A1"})
    assert first.status_code == 201
    second = await client.post("Patient", json=patient(identifier=(MRN, "A1")),
                               headers={"If-None-Exist": f"identifier={MRN}|A1"})
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    any_system = await client.post("Patient", json=patient(),
                                   headers={"If-None-Exist": "Patient?identifier=A1"})
    assert any_system.status_code == 200
    await client.post("Patient", json=patient(identifier=(MRN, "A2")))
    await client.post("Patient", json=patient(identifier=("urn:other", "A2")))
    several = await client.post("Patient", json=patient(),
                                headers={"If-None-Exist": "identifier=A2"})
    assert several.status_code == 412
    total = (await client.get("Patient", params={"_summary": "count"})).json()["total"]
    assert total == 3


async def test_conditional_update(client: httpx.AsyncClient) -> None:
    created = await client.put("Patient", params={"identifier": f"{MRN}|B1"},
                               json=patient(identifier=(MRN, "B1")))
    assert created.status_code == 201
    pid = created.json()["id"]
    updated = await client.put("Patient", params={"identifier": f"{MRN}|B1"},
                               json=patient(identifier=(MRN, "B1"), gender="female"))
    assert updated.status_code == 200
    assert updated.json()["id"] == pid and updated.json()["meta"]["versionId"] == "2"
    await client.post("Patient", json=patient(identifier=(MRN, "B2")))
    await client.post("Patient", json=patient(identifier=(MRN, "B2")))
    several = await client.put("Patient", params={"identifier": f"{MRN}|B2"}, json=patient())
    assert several.status_code == 412
    by_id = await client.put("Patient", params={"_id": pid}, json=patient(gender="other"))
    assert by_id.status_code == 200 and by_id.json()["gender"] == "other"


async def test_conditional_delete(client: httpx.AsyncClient) -> None:
    pid = (await client.post("Patient", json=patient(identifier=(MRN, "C1")))).json()["id"]
    none = await client.delete("Patient", params={"identifier": f"{MRN}|nobody"})
    assert none.status_code == 200
    deleted = await client.delete("Patient", params={"identifier": f"{MRN}|C1"})
    assert deleted.status_code == 200
    assert (await client.get(f"Patient/{pid}")).status_code == 410


async def test_identifier_search_forms(client: httpx.AsyncClient) -> None:
    await client.post("Patient", json=patient(identifier=(MRN, "D1")))
    await client.post("Patient", json={**patient(), "identifier": [{"value": "D1"}]})
    async def total(value: str) -> int:
        resp = await client.get("Patient", params={"identifier": value})
        assert resp.status_code == 200, resp.text
        return int(resp.json()["total"])
    assert await total("D1") == 2
    assert await total(f"{MRN}|D1") == 1
    assert await total("|D1") == 1
    assert await total(f"{MRN}|") == 1
    assert await total(f"{MRN}|D1,|D1") == 2
