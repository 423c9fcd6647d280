"""The outbox's write side on MongoDB: numbering change events, staging them with their
change, settling or voiding them (the read side is ``outbox.py``).

An event is a document ``{_id: key, t, i, v, a, ts}`` of ``events`` (``event_key``: its
number as a string of 20 digits, so that ``_id`` order is number order), plus ``tp``, the
committing span's W3C traceparent, when tracing is on (``observability/tracing.py``). It
is inserted *pending* (``st: "p"``, with the process ``p`` and, in a transaction, ``tx``)
before its change's commit point, its number is written on the change's history version
(``e``), and the mark is cleared once the change is settled; a change that fails or is
rolled back *voids* its event (``st: "x"``) instead of deleting it. So an event exists
exactly when its change is finalised, and readers (``outbox.py``) stop at a pending one.

Numbering: allocation is insertion. Each process keeps a hint of the next number (at
open: above the highest), inserts ``{_id: hint}`` and on a duplicate re-reads the highest;
one insertion in flight per process, so a number's document exists before any higher
number of the same process is taken, and a process takes a number only above one it saw
exist. Every number between the floor and the highest therefore has its document (pending,
settled or void): a missing number below the highest was purged, never "not yet written".
Voids, not deletions, keep it so. Only the purge deletes, and it first raises the floor
(``event_floor``) over what it deletes: a process whose hint is older than a purge could
otherwise take a purged number again, below a cursor a consumer already moved past, so
every insertion checks the floor before the number is used.

The same property lets a reader find the highest number by looking documents up by
``_id`` (``highest``): where the database reads a whole collection for a range or a sort
(FerretDB, which pushes down only ``_id`` equality), that is a handful of lookups instead
of a scan of the retained outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from fhir_server.observability import tracing
from fhir_server.storage.model import action_of
from fhir_server.storage.mongo.filters import by_id
from fhir_server.storage.mongo.guarded import Guarded, expect_filter
from fhir_server.storage.mongo.liveness import Liveness
from fhir_server.storage.mongo.versions import PENDING

EVENTS = "events"
EVENT_FLOOR = "event_floor"  # {_id: "floor", n}: numbers up to n may have been purged
FLOOR_ID = "floor"
VOID = "x"  # the event of a change that never committed: skipped by readers, purged later
# Updates per request when settling a transaction's events on MongoDB.
SETTLE_BATCH = 50
# FerretDB 1.24 (SQLite) keeps each statement of an update command on a connection of its
# own until the whole command ends, and needs one more connection for each statement's
# write; its pool per database has 100. So update commands holding 100 connections among
# them all wait for ever: one of 100 statements, or two of 50 at once (what hung CI: a
# killed loader's settle still running beside its successor's). There an event is settled
# by a command of one statement, this many at once.
FERRETDB_SETTLES_AT_ONCE = 4
Doc = dict[str, Any]


def event_key(number: int) -> str:
    """An event's ``_id``. A string, not the integer: FerretDB 1.24 (SQLite) finds a
    document by a string ``_id`` through an index but reads the whole collection for an
    integer one (measured at 6,000 events: 0.6 ms against 45 ms per lookup)."""
    return f"{max(number, 0):020d}"


class EventLog:
    """Allocates, settles and voids this process's events."""

    def __init__(self, db: AsyncDatabase[Doc], guarded: Guarded, liveness: Liveness, *,
                 uses_indexes: bool = True) -> None:
        self.db = db
        self.guarded = guarded
        self.liveness = liveness
        self.uses_indexes = uses_indexes  # False: ranges and sorts read the whole collection
        self._hint = 1
        self._seen = 0  # a number this process saw exist (where a lookup of the highest starts)
        self._allocating = asyncio.Lock()  # one insertion in flight in this process
        self._in_flight: set[int] = set()  # this process's numbers whose change is at work

    async def open(self) -> None:
        self._hint = max(await self.highest(), await self.floor()) + 1

    async def highest(self) -> int:
        """The highest number taken (0 before the first)."""
        if not self.uses_indexes:
            return await self._highest_by_lookups()
        doc = await self.db[EVENTS].find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
        return 0 if doc is None else int(doc["_id"])

    async def exists(self, number: int) -> bool:
        """Whether event ``number`` has its document (pending, settled or void)."""
        found = await self.db[EVENTS].find_one({"_id": event_key(number)}, {"_id": 1})
        if found is not None:
            self.saw(number)
        return found is not None

    def saw(self, number: int) -> None:
        """Event ``number`` exists: a later search for the highest starts there."""
        self._seen = max(self._seen, number)

    async def _highest_by_lookups(self) -> int:
        """The highest number, by ``_id`` lookups only: every number above the floor up to the
        highest has its document, so the highest is the last of an unbroken run, found by
        doubling steps from a number known to exist, then halving (a few lookups)."""
        low = await self.floor()  # (floor, highest] all exist; the floor itself may be gone
        for known in (self._seen, self._hint - 1):
            if known > low and await self.exists(known):
                low = known
                break
        step = 1
        while await self.exists(low + step):
            low += step
            step *= 2
        high = low + step  # low exists (or is the floor), high does not
        while high - low > 1:
            middle = (low + high) // 2
            if await self.exists(middle):
                low = middle
            else:
                high = middle
        return low

    async def floor(self) -> int:
        doc = await self.db[EVENT_FLOOR].find_one({"_id": FLOOR_ID})
        return 0 if doc is None else int(doc["n"])

    async def raise_floor(self, number: int) -> None:
        try:
            await self.db[EVENT_FLOOR].update_one({"_id": FLOOR_ID}, {"$max": {"n": number}},
                                                  upsert=True)
        except DuplicateKeyError:  # two upserts raced to insert it: the other one did
            await self.db[EVENT_FLOOR].update_one({"_id": FLOOR_ID}, {"$max": {"n": number}})

    def in_flight(self, number: int) -> bool:
        """Whether this process's change of event ``number`` is still at work."""
        return number in self._in_flight

    async def action(self, *, type_: str, id_: str, previous: int | None,
                     text: str | None) -> str:
        """The change a write makes (``model.action_of``); an update of a resource reads
        whether its current version is live. Should that version move before the write's
        commit point, the write fails its version check and its event is voided."""
        if previous is None or text is None:
            return action_of(text=text, previous_live=False)
        doc = await self.db[type_].find_one(by_id(id_), {"v": 1, "json": 1})
        return action_of(text=text, previous_live=doc is not None and doc.get("json") is not None)

    async def append(self, *, type_: str, id_: str, version: int, ts: datetime, action: str,
                     tx: str | None = None) -> int:
        """Insert a change's event, pending; its number."""
        doc: Doc = {"t": type_, "i": id_, "v": version, "a": action, "ts": ts, "st": PENDING,
                    "p": self.liveness.process}
        if tx is not None:
            doc["tx"] = tx
        trace = tracing.current_traceparent()  # the write's span: its commit's
        if trace is not None:
            doc["tp"] = trace
        while True:
            number = await self._insert(doc)
            try:
                floor = await self.floor()
            except BaseException:
                await self.void([number])
                raise
            if number > floor:
                return number
            # Purged while this process's hint was older than the purge: take another.
            try:
                await self.guarded.delete(self.db[EVENTS], event_key(number), {"st": PENDING})
            finally:
                self._in_flight.discard(number)
            async with self._allocating:
                self._hint = max(self._hint, floor + 1)

    async def _insert(self, doc: Doc) -> int:
        async with self._allocating:
            while True:
                number = self._hint
                self._in_flight.add(number)  # before the insert: readers here see it at work
                try:
                    await self.db[EVENTS].insert_one({"_id": event_key(number), **doc})
                except DuplicateKeyError:  # another process took it
                    self._in_flight.discard(number)
                    self._hint = max(number + 1, await self.highest() + 1)
                    continue
                except BaseException:
                    self._in_flight.discard(number)
                    raise
                self._hint = number + 1
                self.saw(number)
                return number

    async def settle(self, numbers: Sequence[int]) -> None:
        """Clear the pending mark of events whose changes are settled."""
        settled = {"$unset": {"st": "", "tx": ""}}
        try:
            if self.guarded.targeted:  # MongoDB
                for start in range(0, len(numbers), SETTLE_BATCH):
                    await self.db[EVENTS].bulk_write(
                        [UpdateOne(self._pending(n), settled)
                         for n in numbers[start:start + SETTLE_BATCH]], ordered=False)
            else:
                for start in range(0, len(numbers), FERRETDB_SETTLES_AT_ONCE):
                    await asyncio.gather(*(
                        self.db[EVENTS].update_one(self._pending(n), settled)
                        for n in numbers[start:start + FERRETDB_SETTLES_AT_ONCE]))
        finally:
            self._in_flight.difference_update(numbers)

    def _pending(self, number: int) -> Doc:
        """Event ``number`` while pending: never a voided one settled by a writer that was
        taken for dead (MongoDB; FerretDB pushes down only the ``_id``)."""
        key = event_key(number)
        return expect_filter(key, {"st": PENDING}) if self.guarded.targeted else {"_id": key}

    async def void(self, numbers: Sequence[int]) -> None:
        """Void the pending events of changes that did not commit."""
        try:
            for n in numbers:
                await self.guarded.update(self.db[EVENTS], event_key(n), {"st": PENDING},
                                          {"$set": {"st": VOID}})
        finally:
            self._in_flight.difference_update(numbers)

    def done(self, numbers: Sequence[int]) -> None:
        """This process no longer works on these events (settled, voided or left to
        whoever settles their transaction)."""
        self._in_flight.difference_update(numbers)
