"""The repository against the real database: concurrency and crash recovery."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from fhir_server.storage.repository import Repository, VersionConflict
from tests.factories import patient


async def test_concurrent_updates_each_get_a_version(client: httpx.AsyncClient) -> None:
    pid = (await client.post("Patient", json=patient())).json()["id"]
    writers = 12
    results = await asyncio.gather(*[
        client.put(f"Patient/{pid}", json=patient(id_=pid, family=f"W{i}"))
        for i in range(writers)
    ])
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    versions = sorted(int(r.json()["meta"]["versionId"]) for r in results)
    assert versions == list(range(2, writers + 2))
    history = (await client.get(f"Patient/{pid}/_history", params={"_count": 100})).json()
    assert history["total"] == writers + 1


async def test_racing_if_match_updates_one_wins(client: httpx.AsyncClient) -> None:
    pid = (await client.post("Patient", json=patient())).json()["id"]
    results = await asyncio.gather(*[
        client.put(f"Patient/{pid}", json=patient(id_=pid, family=f"R{i}"),
                   headers={"If-Match": 'W/"1"'})
        for i in range(6)
    ])
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [412] * 5


async def test_stale_previous_version_conflicts(repo: Repository) -> None:
    first = await repo.write(type_="Patient", id_="p1", previous=None, text='{"a":1}',
                             index={}, method="POST")
    assert first.version == 1
    with pytest.raises(VersionConflict):
        await repo.write(type_="Patient", id_="p1", previous=None, text='{"a":2}', index={},
                         method="POST")
    await repo.write(type_="Patient", id_="p1", previous=1, text='{"a":3}', index={}, method="PUT")
    with pytest.raises(VersionConflict):
        await repo.write(type_="Patient", id_="p1", previous=1, text='{"a":4}', index={},
                         method="PUT")
    # the losing writes left nothing behind
    page = await repo.history(type_="Patient", id_="p1", count=10)
    assert page.total == 2
    assert [v.text for v in page.versions] == ['{"a":3}', '{"a":1}']


async def test_unfiltered_totals_follow_creates_deletes_and_recreations(
        client: httpx.AsyncClient) -> None:
    async def total() -> int:
        counted = (await client.get("Patient", params={"_summary": "count"})).json()["total"]
        listed = (await client.get("Patient", params={"_total": "accurate"})).json()["total"]
        assert counted == listed
        return int(counted)

    ids = [(await client.post("Patient", json=patient(family=f"T{i}"))).json()["id"]
           for i in range(3)]
    assert await total() == 3
    assert (await client.delete(f"Patient/{ids[0]}")).status_code in (200, 204)
    assert (await client.delete(f"Patient/{ids[0]}")).status_code in (200, 204)  # again
    assert await total() == 2
    assert (await client.put(f"Patient/{ids[0]}", json=patient(id_=ids[0]))).status_code in (
        200, 201)
    assert await total() == 3
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"Patient/{ids[1]}"}},
        {"resource": patient(family="T9"), "request": {"method": "POST", "url": "Patient"}}]}
    assert (await client.post("", json=bundle)).status_code == 200
    assert await total() == 3
