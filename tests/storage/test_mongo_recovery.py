"""The MongoDB engine's staged writes: what a crash leaves is settled at the next start."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from fhir_server.storage.locks import LOCKS
from fhir_server.storage.model import now_ms
from fhir_server.storage.mongo.repository import MongoRepository
from fhir_server.storage.mongo.versions import HISTORY, PENDING, STALE_SECONDS
from fhir_server.storage.open import open_repository
from tests.support.store import Store, mongo_only

pytestmark = mongo_only


@pytest.fixture
async def repo(store: Store) -> AsyncIterator[MongoRepository]:
    repository = await open_repository(store.settings())
    assert isinstance(repository, MongoRepository)
    try:
        yield repository
    finally:
        await repository.close()


async def test_recovery_rolls_pending_versions_forward_and_back(repo: MongoRepository) -> None:
    # The states a crash can leave, produced with the repository's own steps:
    # a version whose current document moved (crash before settling) ...
    await repo.write(type_="Patient", id_="fwd", previous=None, text='{"v":1}', index={},
                     method="POST")
    await repo.db[HISTORY].update_one({"_id": "Patient/fwd/1"}, {"$set": {"st": PENDING}})
    # ... and a version written to history only (crash before the current document moved).
    await repo.write(type_="Patient", id_="back", previous=None, text='{"v":1}', index={},
                     method="POST")
    crashed = now_ms() - timedelta(seconds=STALE_SECONDS + 1)
    await repo.db[HISTORY].insert_one({"_id": "Patient/back/2", "t": "Patient", "i": "back",
                                       "v": 2, "ts": crashed, "m": "PUT", "json": '{"v":2}',
                                       "st": PENDING})
    # A version being written by a live process (here: this one) is left alone.
    await repo.db[HISTORY].insert_one({"_id": "Patient/inflight/1", "t": "Patient",
                                       "i": "inflight", "v": 1, "ts": now_ms(), "m": "POST",
                                       "json": '{"v":1}', "st": PENDING,
                                       "p": repo.liveness.process})
    assert await repo.version(type_="Patient", id_="back", version=2) is None
    assert (await repo.version(type_="Patient", id_="fwd", version=1)) is not None

    forward, back = await repo.recover()
    assert (forward, back) == (1, 1)
    assert [d["_id"] async for d in repo.db[HISTORY].find({"st": PENDING})] == [
        "Patient/inflight/1"]
    assert await repo.db[HISTORY].count_documents({"_id": "Patient/back/2"}) == 0
    nxt = await repo.write(type_="Patient", id_="back", previous=1, text='{"v":2}', index={},
                           method="PUT")
    assert nxt.version == 2


async def test_a_pending_write_of_a_process_killed_a_moment_ago_waits_for_its_lease(
        repo: MongoRepository) -> None:
    """The killed process's lease has not lapsed yet: recovery waits for it (another
    worker's write in flight would finish meanwhile), then rolls the write back."""
    lapses = time.time() + 2
    await repo.records.insert(kind=LOCKS, doc={"_id": "process:killed", "owner": "x",
                                               "expires": lapses})
    await repo.db[HISTORY].insert_one({"_id": "Patient/killed/1", "t": "Patient",
                                       "i": "killed", "v": 1, "ts": now_ms(), "m": "POST",
                                       "json": '{"v":1}', "st": PENDING, "p": "killed"})
    forward, back = await repo.recover()
    assert (forward, back) == (0, 1)
    assert time.time() >= lapses
    assert await repo.db[HISTORY].count_documents({"_id": "Patient/killed/1"}) == 0
