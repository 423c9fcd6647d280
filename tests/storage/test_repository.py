"""The repository against the real database: concurrency and crash recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from fhir_server.storage.open import open_repository
from fhir_server.storage.repository import Repository, VersionConflict
from tests.conftest import Store
from tests.factories import patient


@pytest.fixture
async def repo(store: Store) -> AsyncIterator[Repository]:
    repository = await open_repository(store.settings())
    try:
        yield repository
    finally:
        await repository.close()


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
