"""Settling a transaction's events never waits on the database for ever.

FerretDB 1.24 (SQLite) keeps a connection for each statement of an update command until
the command ends and has 100 per database, so update commands of many statements running
at once can each hold some and all wait for more. Settled 50 to a command, four at once
hung CI's first-start fault scenario (killed loaders' settles still running in FerretDB
beside their successor's). The run's FerretDB is shared by every test, so this one starts
its own: a hang here costs only its own database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_server.storage.model import now_ms
from fhir_server.storage.mongo.event_log import EVENTS, event_key
from fhir_server.storage.mongo.repository import MongoRepository
from fhir_server.storage.mongo.versions import PENDING
from fhir_server.storage.open import open_repository
from tests.support.store import Store, mongo_only

pytestmark = [mongo_only, pytest.mark.process]

PROCESSES = 8
EVENTS_EACH = 60  # more than one settle command used to carry (50)


@pytest.fixture
def own_store(tmp_path: Path) -> Iterator[Store]:
    from tools.ferretdb.launcher import EmbeddedFerretDB

    db = EmbeddedFerretDB(data_dir=tmp_path / "ferretdb")
    try:
        yield Store(data_dir=tmp_path / "data", mongo_uri=db.start(), database="settle")
    finally:
        db.stop()


async def test_processes_settling_large_transactions_at_once_all_finish(
        own_store: Store) -> None:
    processes: list[MongoRepository] = []
    for _ in range(PROCESSES):
        repository = await open_repository(own_store.settings())
        assert isinstance(repository, MongoRepository)
        processes.append(repository)
    db = processes[0].db
    ts = now_ms()
    total = EVENTS_EACH * PROCESSES
    await db[EVENTS].insert_many([
        {"_id": event_key(n), "t": "Basic", "i": f"b{n}", "v": 1, "a": "create", "ts": ts,
         "st": PENDING, "p": "live"} for n in range(1, total + 1)])
    settles = asyncio.gather(*(
        p.event_log.settle(range(k * EVENTS_EACH + 1, (k + 1) * EVENTS_EACH + 1))
        for k, p in enumerate(processes)))
    try:
        await asyncio.wait_for(settles, timeout=30)
    except TimeoutError:  # the database is stuck: nothing more is asked of it
        pytest.fail(f"{PROCESSES} processes settling {EVENTS_EACH} events each at once "
                    "did not finish within 30 s")
    assert await db[EVENTS].count_documents({"st": PENDING}) == 0
    assert await db[EVENTS].count_documents({}) == total
    for p in processes:
        await p.close()
