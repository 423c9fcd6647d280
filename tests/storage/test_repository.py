"""The repository against the real database: concurrency and crash recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from pymongo import AsyncMongoClient

from fhir_server.storage.engine import database, detect_engine, make_client
from fhir_server.storage.model import now_ms
from fhir_server.storage.repository import Repository, VersionConflict
from fhir_server.storage.versions import HISTORY, PENDING
from tests.factories import patient


@pytest.fixture
async def repo(mongo_uri: str, db_name: str, drop_after: None) -> AsyncIterator[Repository]:
    client: AsyncMongoClient = make_client(mongo_uri)
    try:
        engine = await detect_engine(client)
        repository = Repository(db=database(client, db_name, engine), engine=engine)
        await repository.ensure_base_indexes()
        yield repository
    finally:
        await client.close()


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
    assert await repo.db[HISTORY].count_documents({"i": "p1"}) == 2


async def test_recovery_rolls_pending_versions_forward_and_back(repo: Repository) -> None:
    # The states a crash can leave, produced with the repository's own steps:
    # a version whose current document moved (crash before settling) ...
    await repo.write(type_="Patient", id_="fwd", previous=None, text='{"v":1}', index={},
                     method="POST")
    await repo.db[HISTORY].update_one({"_id": "Patient/fwd/1"}, {"$set": {"st": PENDING}})
    # ... and a version written to history only (crash before the current document moved).
    await repo.write(type_="Patient", id_="back", previous=None, text='{"v":1}', index={},
                     method="POST")
    await repo.db[HISTORY].insert_one({"_id": "Patient/back/2", "t": "Patient", "i": "back",
                                       "v": 2, "ts": now_ms(), "m": "PUT", "json": '{"v":2}',
                                       "st": PENDING})
    assert await repo.version(type_="Patient", id_="back", version=2) is None
    assert (await repo.version(type_="Patient", id_="fwd", version=1)) is not None

    forward, back = await repo.recover()
    assert (forward, back) == (1, 1)
    assert await repo.db[HISTORY].count_documents({"st": PENDING}) == 0
    assert await repo.db[HISTORY].count_documents({"_id": "Patient/back/2"}) == 0
    nxt = await repo.write(type_="Patient", id_="back", previous=1, text='{"v":2}', index={},
                           method="PUT")
    assert nxt.version == 2
