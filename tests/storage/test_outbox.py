"""The outbox: every committed change appends its event in the same commit, on every engine."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from fhir_server.storage.fence import LeaseLost, unfenced
from fhir_server.storage.locks import LOCKS
from fhir_server.storage.model import now_ms
from fhir_server.storage.open import open_repository
from fhir_server.storage.repository import (
    PlannedWrite,
    Repository,
    TransactionConflict,
    VersionConflict,
)
from tests.support.store import Store


def _text(n: int) -> str:
    return f'{{"resourceType":"Basic","id":"b{n}"}}'


async def test_each_write_appends_its_event_in_number_order(repo: Repository) -> None:
    start = await repo.last_event()
    await repo.write(type_="Basic", id_="b1", previous=None, text=_text(1), index={},
                     method="POST")
    await repo.write(type_="Basic", id_="b1", previous=1, text=_text(1), index={}, method="PUT")
    await repo.write(type_="Basic", id_="b1", previous=2, text=None, index=None,
                     method="DELETE")
    await repo.write(type_="Basic", id_="b1", previous=3, text=_text(1), index={}, method="PUT")
    events = await repo.events(after=start, limit=100)
    assert [(e.reference, e.version, e.action) for e in events] == [
        ("Basic/b1", 1, "create"), ("Basic/b1", 2, "update"), ("Basic/b1", 3, "delete"),
        ("Basic/b1", 4, "create")]  # written again after its deletion: a new life
    numbers = [e.number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4
    assert await repo.last_event() == numbers[-1]
    # Paging: after a number, at most limit.
    assert [e.number for e in await repo.events(after=numbers[0], limit=2)] == numbers[1:3]


async def test_a_conflicting_write_appends_nothing(repo: Repository) -> None:
    await repo.write(type_="Basic", id_="b1", previous=None, text=_text(1), index={},
                     method="POST")
    mark = await repo.last_event()
    with pytest.raises(Exception, match="Basic/b1"):
        await repo.write(type_="Basic", id_="b1", previous=None, text=_text(1), index={},
                         method="POST")
    assert await repo.events(after=mark, limit=10) == []


async def test_a_transaction_appends_one_event_per_write_and_side_effect(repo: Repository
                                                                         ) -> None:
    start = await repo.last_event()
    ts = now_ms()
    writes = [PlannedWrite("Basic", f"t{n}", None, _text(n), {}, "POST") for n in range(3)]
    effect = PlannedWrite("Basic", "side", None, _text(9), {}, "POST")
    await repo.commit_transaction(writes, ts=ts, side_effects=[effect])
    events = await repo.events(after=start, limit=100)
    assert sorted(e.id_ for e in events) == ["side", "t0", "t1", "t2"]
    assert {e.action for e in events} == {"create"}
    assert all(e.at == ts for e in events)


async def test_a_failed_transaction_appends_none(repo: Repository) -> None:
    await repo.write(type_="Basic", id_="taken", previous=None, text=_text(0), index={},
                     method="POST")
    mark = await repo.last_event()
    writes = [PlannedWrite("Basic", "fresh", None, _text(1), {}, "POST"),
              PlannedWrite("Basic", "taken", None, _text(2), {}, "POST")]  # exists: conflict
    with pytest.raises(TransactionConflict):
        await repo.commit_transaction(writes, ts=now_ms())
    assert await repo.events(after=mark, limit=10) == []
    assert await repo.current(type_="Basic", id_="fresh") is None


async def test_purge_keeps_what_a_consumer_has_not_passed_and_the_last_number(
        repo: Repository) -> None:
    for n in range(4):
        await repo.write(type_="Basic", id_=f"p{n}", previous=None, text=_text(n), index={},
                         method="POST")
    events = await repo.events(after=0, limit=100)
    numbers = [e.number for e in events]
    later = now_ms() + timedelta(days=1)
    # Only what every consumer has passed goes, however old.
    assert await repo.purge_events(before=later, upto=numbers[1]) == 2
    assert [e.number for e in await repo.events(after=0, limit=100)] == numbers[2:]
    # Nothing younger than the retention goes, whatever consumers have passed.
    assert await repo.purge_events(before=events[0].at, upto=numbers[-1]) == 0
    # Everything passed and old: the highest number stays, so none is handed out twice.
    await repo.purge_events(before=later, upto=numbers[-1])
    await repo.write(type_="Basic", id_="after", previous=None, text=_text(5), index={},
                     method="POST")
    assert (await repo.events(after=0, limit=100))[-1].number > numbers[-1]


async def test_a_write_refused_for_a_lost_lease_appends_nothing(repo: Repository) -> None:
    """A writer that lost its lease is refused at its commit point: neither its single
    write nor its transaction leaves an event."""
    async def take_over() -> None:  # what a successor does once the lease lapsed
        await repo.records.delete(kind=LOCKS, id_="outbox-lease")
        assert await repo.records.insert(kind=LOCKS, doc={"_id": "outbox-lease",
                                                          "owner": "successor",
                                                          "expires": time.time() + 30})

    mark = await repo.last_event()
    for attempt in ("write", "transaction"):
        with pytest.raises(LeaseLost):
            async with repo.locks.hold(["outbox-lease"], lease=30):
                with unfenced():
                    await take_over()
                if attempt == "write":
                    await repo.write(type_="Basic", id_="late", previous=None, text=_text(1),
                                     index={}, method="POST")
                else:
                    await repo.commit_transaction(
                        [PlannedWrite("Basic", f"late{n}", None, _text(n), {}, "POST")
                         for n in range(2)], ts=now_ms())
        await repo.records.delete(kind=LOCKS, id_="outbox-lease")
    assert await repo.events(after=mark, limit=10) == []
    await repo.write(type_="Basic", id_="late", previous=None, text=_text(1), index={},
                     method="POST")
    assert [e.id_ for e in await repo.events(after=mark, limit=10)] == ["late"]


ROUNDS = 8


async def test_a_consumer_polling_while_writers_commit_never_skips_an_event(
        store: Store, repo: Repository) -> None:
    """Two repositories on one store (two server processes), each with a writer of single
    writes and a writer of transactions on contested resources (so some conflict and roll
    back), and a consumer polling throughout, resuming after the last number it handled:
    it sees every committed change's event exactly once, in number order. On SQLite, one
    writer at a time, numbers follow commit order and this holds trivially; on MongoDB
    numbers are taken before commits that may finish out of their order, and the
    consumer must never read past an event still in flight."""
    other = await open_repository(store.settings())
    committed: set[tuple[str, int]] = set()

    async def single_writer(r: Repository) -> None:
        for n in range(ROUNDS):
            current = await r.peek(type_="Basic", id_="shared")
            try:
                stored = await r.write(type_="Basic", id_="shared",
                                       previous=current.version if current else None,
                                       text=_text(n), index={}, method="PUT")
            except VersionConflict:
                continue
            committed.add((stored.id_, stored.version))

    async def transaction_writer(r: Repository, prefix: str) -> None:
        for n in range(ROUNDS):
            current = await r.peek(type_="Basic", id_="pair")
            writes = [PlannedWrite("Basic", f"{prefix}{n}", None, _text(n), {}, "POST"),
                      PlannedWrite("Basic", "pair", current.version if current else None,
                                   _text(n), {}, "PUT")]
            try:
                stored = await r.commit_transaction(writes, ts=now_ms())
            except TransactionConflict:
                continue
            committed.update((s.id_, s.version) for s in stored)

    seen: list[int] = []
    writing = True

    async def consumer() -> None:
        cursor = 0
        while True:
            last_round = not writing
            batch = await repo.events(after=cursor, limit=3)
            seen.extend(e.number for e in batch)
            if batch:
                cursor = batch[-1].number
            elif last_round:
                return
            await asyncio.sleep(0)

    try:
        reading = asyncio.create_task(consumer())
        await asyncio.gather(single_writer(repo), single_writer(other),
                             transaction_writer(repo, "a"), transaction_writer(other, "b"))
        writing = False
        await reading
        everything = await other.events(after=0, limit=10_000)
    finally:
        await other.close()
    assert seen == [e.number for e in everything]  # each once, in order: none skipped
    assert sorted((e.id_, e.version) for e in everything) == sorted(committed)
    assert len(committed) >= 2 * ROUNDS  # every conflict lost is a commit won
    assert {e.id_ for e in everything} >= {"shared", "pair"}


async def test_the_servers_own_log_appends_no_event(repo: Repository) -> None:
    """AuditEvents stored with append_new are the server's log of what happened, not
    changes for consumers to react to."""
    mark = await repo.last_event()
    stored = await repo.append_new(type_="AuditEvent", items=[
        (f"audit{n}", f'{{"resourceType":"AuditEvent","id":"audit{n}"}}', {}) for n in range(3)],
        ts=now_ms())
    assert stored == 3
    assert await repo.last_event() == mark
    assert await repo.events(after=mark, limit=10) == []
