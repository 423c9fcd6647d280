"""The MongoDB engine's outbox: events staged with their changes, read in number order
even when commits finish out of it, and settled when their writer died.

Two repositories on one database stand for two server processes (each holds its own
process lease, ``liveness.py``); closing one is its process going away (its lease is
released, as a killed one's lapses). What a crash leaves is produced either with the
engine's own steps stopped where the crash would stop them (a transaction staged and never
completed) or by writing the exact documents a crashed process leaves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from fhir_server.storage.model import now_ms
from fhir_server.storage.mongo.event_log import EVENTS, VOID, EventLog, event_key
from fhir_server.storage.mongo.outbox import Outbox
from fhir_server.storage.mongo.repository import MongoRepository
from fhir_server.storage.mongo.transactions import TRANSACTIONS
from fhir_server.storage.mongo.versions import HISTORY, PENDING
from fhir_server.storage.open import open_repository
from fhir_server.storage.repository import PlannedWrite, Repository, VersionConflict
from tests.support.store import Store, mongo_only

pytestmark = mongo_only


def _text(id_: str) -> str:
    return f'{{"resourceType":"Basic","id":"{id_}"}}'


def _create(id_: str) -> PlannedWrite:
    return PlannedWrite("Basic", id_, None, _text(id_), {}, "POST")


async def _open(store: Store) -> MongoRepository:
    repository = await open_repository(store.settings())
    assert isinstance(repository, MongoRepository)
    return repository


@pytest.fixture
def repo(repo: Repository) -> MongoRepository:
    """The root conftest's repository, which on this engine is MongoDB's."""
    assert isinstance(repo, MongoRepository)
    return repo


@pytest.fixture
async def other(store: Store) -> AsyncIterator[MongoRepository]:
    """A second server process on the same database (tests may close it early)."""
    repository = await _open(store)
    try:
        yield repository
    finally:
        await repository.close()


async def _event_doc(repo: MongoRepository, number: int) -> dict[str, Any]:
    doc = await repo.db[EVENTS].find_one({"_id": event_key(number)})
    assert doc is not None
    return doc


async def test_a_later_commit_waits_for_an_earlier_number_still_in_flight(
        repo: MongoRepository, other: MongoRepository) -> None:
    await repo.write(type_="Basic", id_="first", previous=None, text=_text("first"), index={},
                     method="POST")
    cursor = await repo.last_event()
    # The other process takes the lower number and stops short of its commit point ...
    staged = await other.transactions.stage([_create("slow")], ts=now_ms())
    [low] = staged.events
    # ... while this one commits a transaction that takes a higher number.
    await repo.commit_transaction([_create("fast")], ts=now_ms())
    high = await repo.last_event()
    assert high > low > cursor
    # No reader gets past the lower number while its writer may still commit it.
    assert await repo.events(after=cursor, limit=10) == []
    assert await other.events(after=cursor, limit=10) == []  # its own, still at work
    assert [e.id_ for e in await repo.events(after=low, limit=10)] == ["fast"]
    await other.transactions.complete(staged)
    events = await repo.events(after=cursor, limit=10)
    assert [(e.number, e.id_, e.action) for e in events] == [(low, "slow", "create"),
                                                            (high, "fast", "create")]


@pytest.mark.parametrize("reached_commit_point", [False, True])
async def test_a_dead_writers_transaction_is_settled_by_the_reader(
        repo: MongoRepository, other: MongoRepository, reached_commit_point: bool) -> None:
    """The process holding the lower number dies in its transaction: the reader settles the
    transaction on the spot (forward when it reached its commit point, back otherwise) and
    reads on, instead of waiting for it for ever."""
    cursor = await repo.last_event()
    staged = await other.transactions.stage([_create("slow1"), _create("slow2")], ts=now_ms())
    if reached_commit_point:  # the record as a crash right after the commit point leaves it
        await other.db[TRANSACTIONS].update_one(
            {"_id": staged.tx}, {"$set": {"state": "committed", "ev": staged.events}})
    await repo.commit_transaction([_create("fast")], ts=now_ms())
    assert await repo.events(after=cursor, limit=10) == []  # its writer still lives
    await other.close()  # ... and now is gone
    events = await repo.events(after=cursor, limit=10)
    expected = ["slow1", "slow2", "fast"] if reached_commit_point else ["fast"]
    assert [e.id_ for e in events] == expected
    assert [e.number for e in events] == sorted(e.number for e in events)
    for number in staged.events:
        assert (await _event_doc(repo, number)).get("st") == (None if reached_commit_point
                                                              else VOID)
    slow = await repo.current(type_="Basic", id_="slow1")
    assert (slow is not None) is reached_commit_point
    assert await repo.db[TRANSACTIONS].count_documents({}) == 0


async def test_a_crashed_single_writers_events_are_settled_and_the_list_goes_on(
        repo: MongoRepository) -> None:
    """Pending events of a process that is gone (``p`` names no live lease), as a crash
    leaves them at each step of a single write: the reader commits the one whose change
    is in place, voids the others, and reads on."""
    await repo.write(type_="Basic", id_="a", previous=None, text=_text("a"), index={},
                     method="POST")
    # Crashed after its commit point, before settling: the current document moved.
    moved = await repo.write(type_="Basic", id_="moved", previous=None, text=_text("moved"),
                             index={}, method="POST")
    moved_number = await repo.last_event()
    await repo.db[EVENTS].update_one({"_id": event_key(moved_number)},
                                     {"$set": {"st": PENDING, "p": "dead"}})
    await repo.db[HISTORY].update_one({"_id": "Basic/moved/1"},
                                      {"$set": {"st": PENDING, "p": "dead"}})
    # Crashed before its commit point: event and version written, the current unmoved.
    ts = now_ms()
    short = moved_number + 1
    await repo.db[EVENTS].insert_one({"_id": event_key(short), "t": "Basic", "i": "a", "v": 2,
                                      "a": "update", "ts": ts, "st": PENDING, "p": "dead"})
    await repo.db[HISTORY].insert_one({"_id": "Basic/a/2", "t": "Basic", "i": "a", "v": 2,
                                       "ts": ts, "m": "PUT", "json": _text("a"),
                                       "st": PENDING, "p": "dead", "e": short})
    # Crashed between taking its number and writing its version.
    await repo.db[EVENTS].insert_one({"_id": event_key(short + 1), "t": "Basic", "i": "c", "v": 1,
                                      "a": "create", "ts": ts, "st": PENDING, "p": "dead"})
    # A live writer then writes version 2 of Basic/a after all (its first try settles the
    # dead version in its way): the dead event must not pass for this one's.
    with pytest.raises(VersionConflict):
        await repo.write(type_="Basic", id_="a", previous=1, text=_text("a"), index={},
                         method="PUT")
    await repo.write(type_="Basic", id_="a", previous=1, text=_text("a"), index={},
                     method="PUT")
    events = await repo.events(after=0, limit=10)
    assert [(e.id_, e.version, e.action) for e in events] == [
        ("a", 1, "create"), ("moved", moved.version, "create"), ("a", 2, "update")]
    assert events[-1].number > short + 1
    assert [(await _event_doc(repo, n)).get("st") for n in (short, short + 1)] == [VOID] * 2
    assert "st" not in ((await repo.db[HISTORY].find_one({"_id": "Basic/moved/1"})) or {})


async def test_recover_settles_the_events_of_transactions_it_rolls_forward_and_back(
        repo: MongoRepository, other: MongoRepository) -> None:
    cursor = await repo.last_event()
    back = await other.transactions.stage([_create("back1"), _create("back2")], ts=now_ms())
    forward = await other.transactions.stage([_create("fwd")], ts=now_ms())
    await other.db[TRANSACTIONS].update_one(
        {"_id": forward.tx}, {"$set": {"state": "committed", "ev": forward.events}})
    await other.close()
    assert await repo.recover() == (1, 1)
    assert await repo.db[EVENTS].count_documents({"st": PENDING}) == 0
    for number in back.events:
        assert (await _event_doc(repo, number)).get("st") == VOID
    assert [e.id_ for e in await repo.events(after=cursor, limit=10)] == ["fwd"]


async def test_a_process_whose_hint_is_older_than_a_purge_takes_a_number_above_it(
        repo: MongoRepository, other: MongoRepository) -> None:
    """The other process opened on an empty outbox, so its next number is 1. Numbers 1 to
    4 are purged, after a consumer passed them: it must not take 1 again (a consumer at 5
    would never see it). The purge's floor sends it above."""
    for n in range(5):
        await repo.write(type_="Basic", id_=f"p{n}", previous=None, text=_text(f"p{n}"),
                         index={}, method="POST")
    assert await repo.last_event() == 5
    later = now_ms() + timedelta(days=1)
    assert await repo.purge_events(before=later, upto=5) == 4
    await other.write(type_="Basic", id_="late", previous=None, text=_text("late"), index={},
                      method="POST")
    assert [(e.number, e.id_) for e in await repo.events(after=5, limit=10)] == [(6, "late")]
    assert await repo.db[EVENTS].count_documents({"_id": {"$lt": event_key(5)}}) == 0


async def test_lookups_by_number_agree_with_a_sorted_read_and_read_on_past_a_purge(
        repo: MongoRepository) -> None:
    """Where a range or a sort reads the whole collection (FerretDB), the highest number and
    the events after a cursor are found by ``_id`` lookups. A log that has seen no number
    (a process just started) must find what a sorted read finds, and a cursor left below a
    purge must read on from above the floor."""
    written = 37
    for n in range(written):
        await repo.write(type_="Basic", id_=f"k{n}", previous=None, text=_text(f"k{n}"),
                         index={}, method="POST")
    top = await repo.db[EVENTS].find_one({}, {"_id": 1}, sort=[("_id", -1)])
    assert top is not None
    fresh = EventLog(repo.db, repo.guarded, repo.liveness, uses_indexes=False)
    assert await fresh.highest() == int(top["_id"]) == written
    outbox = Outbox(db=repo.db, guarded=repo.guarded, liveness=repo.liveness, log=fresh,
                    transactions=repo.transactions)
    by_range = [int(d["_id"]) async for d in repo.db[EVENTS].find(
        {"st": {"$exists": False}}).sort("_id", 1)]
    assert len(by_range) == written
    assert [e.number for e in await outbox.events(after=0, limit=100)] == by_range
    assert [e.number for e in await outbox.events(after=30, limit=3)] == [31, 32, 33]
    assert await outbox.events(after=written, limit=10) == []
    later = now_ms() + timedelta(days=1)
    purged = await repo.purge_events(before=later, upto=20)
    assert purged == 20
    behind = [e.number for e in await outbox.events(after=3, limit=5)]
    assert behind == [21, 22, 23, 24, 25]
    assert await EventLog(repo.db, repo.guarded, repo.liveness,
                          uses_indexes=False).highest() == written

