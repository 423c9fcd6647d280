"""Instance, type and system history with _since, _at, _count and paging."""

from __future__ import annotations

import asyncio

import httpx

from tests.factories import patient


async def _write_sequence(client: httpx.AsyncClient) -> tuple[str, list[str]]:
    """Create, update twice, delete; return the id and each version's lastUpdated."""
    first = (await client.post("Patient", json=patient())).json()
    pid = first["id"]
    stamps = [first["meta"]["lastUpdated"]]
    for gender in ("female", "other"):
        await asyncio.sleep(0.01)
        resp = await client.put(f"Patient/{pid}", json=patient(id_=pid, gender=gender))
        stamps.append(resp.json()["meta"]["lastUpdated"])
    await asyncio.sleep(0.01)
    await client.delete(f"Patient/{pid}")
    return pid, stamps


async def test_instance_history(client: httpx.AsyncClient) -> None:
    pid, _ = await _write_sequence(client)
    bundle = (await client.get(f"Patient/{pid}/_history")).json()
    assert bundle["type"] == "history"
    assert bundle["total"] == 4
    methods = [e["request"]["method"] for e in bundle["entry"]]
    assert methods == ["DELETE", "PUT", "PUT", "POST"]  # newest first
    assert "resource" not in bundle["entry"][0]
    genders = [e["resource"]["gender"] for e in bundle["entry"][1:]]
    assert genders == ["other", "female", "male"]
    assert [e["response"]["etag"] for e in bundle["entry"]] == [f'W/"{n}"' for n in (4, 3, 2, 1)]
    assert (await client.get("Patient/unknown-id/_history")).status_code == 404


async def test_since_and_at(client: httpx.AsyncClient) -> None:
    pid, stamps = await _write_sequence(client)
    since = (await client.get(f"Patient/{pid}/_history", params={"_since": stamps[1]})).json()
    assert since["total"] == 3  # version 2, version 3 and the deletion
    # _at: the versions current at some point during that instant: only version 2.
    at = (await client.get(f"Patient/{pid}/_history", params={"_at": stamps[1]})).json()
    assert [e["resource"]["meta"]["versionId"] for e in at["entry"]] == ["2"]


async def test_type_and_system_history_paging(client: httpx.AsyncClient) -> None:
    ids = [(await client.post("Patient", json=patient(family=f"F{i}"))).json()["id"]
           for i in range(5)]
    await client.post("Organization", json={"resourceType": "Organization", "name": "Acme"})
    seen: list[str] = []
    url: str | None = "Patient/_history?_count=2"
    pages = 0
    while url:
        page = (await client.get(url)).json()
        assert page["total"] == 5
        seen += [e["resource"]["id"] for e in page["entry"]]
        url = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
        pages += 1
        # a write between pages must not shift later pages
        if pages == 1:
            await client.post("Patient", json=patient(family="late"))
    assert pages == 3
    assert seen == list(reversed(ids))
    system = (await client.get("_history")).json()
    assert system["total"] == 7
    types = {e["resource"]["resourceType"] for e in system["entry"]}
    assert types == {"Patient", "Organization"}
