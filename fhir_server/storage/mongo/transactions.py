"""Multi-resource transactions that are all-or-nothing on any engine, also across a crash.

Protocol (no multi-document transactions needed):

1. A transaction record ``{_id: tx, state: "pending", keys}`` is inserted in ``transactions``.
2. Every write is *staged*: its history version is inserted marked pending (``st: "p"``,
   ``tx``), and the current document gets the next version beside the current one
   (``tx``, ``nx``), guarded by an optimistic check on its version and on the absence
   of another transaction's mark. A new resource is staged as a ghost document
   (``ghost: true``) that reads as absent. Nothing staged is visible: readers serve
   ``nx`` only when the transaction record says ``committed``.
   Before its history version, every write appends its change event, pending, with
   ``tx`` (``event_log.py``); the version names the event's number (``e``).
3. The commit point is one atomic update of the record to ``committed``, which also
   records the transaction's event numbers (``ev``).
4. Finalising moves ``nx`` into place, settles the history versions, then the events, and
   deletes the record.

A failure before the commit point unstages everything and voids the events (roll back). After a crash,
``recover()`` at start-up rolls every ``committed`` record forward and every ``pending``
one whose process is gone back (``liveness.py``: with workers or replicas a pending one
may be another live process's); a record that blocks a writer is settled the same way
on the spot once its process is gone.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from fhir_server.storage.fence import LeaseLost
from fhir_server.storage.model import StoredVersion, now_ms
from fhir_server.storage.mongo.event_log import EventLog
from fhir_server.storage.mongo.fencing import check_fences
from fhir_server.storage.mongo.guarded import ABSENT, Guarded
from fhir_server.storage.mongo.liveness import Liveness
from fhir_server.storage.mongo.versions import (
    HISTORY,
    PENDING,
    history_key,
    settle_version,
    version_filter,
)
from fhir_server.storage.repository import PlannedWrite, TransactionConflict

log = logging.getLogger("fhir_server.storage")

TRANSACTIONS = "transactions"
Doc = dict[str, Any]


@dataclass
class Staged:
    """A transaction staged up to its commit point: its writes and their events."""

    tx: str
    ts: datetime
    writes: list[PlannedWrite]
    events: list[int] = field(default_factory=list)

    def versions(self) -> list[StoredVersion]:
        return [StoredVersion(type_=w.type_, id_=w.id_, version=(w.previous or 0) + 1,
                              last_updated=self.ts, text=w.text, method=w.method)
                for w in self.writes]


class TransactionLog:
    def __init__(self, db: AsyncDatabase[Doc], guarded: Guarded, liveness: Liveness,
                 events: EventLog) -> None:
        self.db = db
        self.guarded = guarded
        self.liveness = liveness
        self.events = events

    async def state(self, tx: str) -> str | None:
        doc = await self.db[TRANSACTIONS].find_one({"_id": tx}, {"state": 1})
        return None if doc is None else str(doc["state"])

    async def commit(self, writes: list[PlannedWrite], *, ts: datetime | None = None
                     ) -> list[StoredVersion]:
        """Write all or nothing; raise TransactionConflict (nothing written) on a conflict."""
        return await self.complete(await self.stage(writes, ts=ts))

    async def stage(self, writes: list[PlannedWrite], *, ts: datetime | None = None
                    ) -> Staged:
        """Steps 1 and 2: nothing of it is visible yet; rolled back on a failure."""
        staged = Staged(tx=uuid.uuid4().hex, ts=ts or now_ms(), writes=writes)
        keys = [history_key(w.type_, w.id_, (w.previous or 0) + 1) for w in writes]
        await self.db[TRANSACTIONS].insert_one({"_id": staged.tx, "state": "pending",
                                                "keys": keys, "created": staged.ts,
                                                "p": self.liveness.process})
        try:
            for i, w in enumerate(writes):
                await self._stage(staged, i, w)
        except BaseException:
            await self._undo(staged)
            raise
        return staged

    async def complete(self, staged: Staged) -> list[StoredVersion]:
        """Steps 3 and 4 (after the fence check, which rolls back when a lease is lost)."""
        try:
            try:
                await check_fences(self.db, self.guarded)
            except LeaseLost:
                await self._undo(staged)
                raise
            # The commit point: one atomic write.
            await self.db[TRANSACTIONS].update_one(
                {"_id": staged.tx}, {"$set": {"state": "committed", "ev": staged.events}})
            await self.finalise(staged.tx)
        finally:
            self.events.done(staged.events)
        return staged.versions()

    async def _undo(self, staged: Staged) -> None:
        try:
            await self.roll_back(staged.tx)
        finally:  # an event whose version was never staged is this process's to void
            await self.events.void(staged.events)

    async def _stage(self, staged: Staged, i: int, w: PlannedWrite) -> None:
        tx, ts = staged.tx, staged.ts
        version = (w.previous or 0) + 1
        key = history_key(w.type_, w.id_, version)
        action = await self.events.action(type_=w.type_, id_=w.id_, previous=w.previous,
                                          text=w.text)
        number = await self.events.append(type_=w.type_, id_=w.id_, version=version, ts=ts,
                                          action=action, tx=tx)
        staged.events.append(number)
        try:
            await self.db[HISTORY].insert_one({
                "_id": key, "t": w.type_, "i": w.id_, "v": version, "ts": ts, "m": w.method,
                "json": w.text, "st": PENDING, "tx": tx, "e": number})
        except DuplicateKeyError:
            raise TransactionConflict(i, key) from None
        nxt = {"v": version, "ts": ts, "m": w.method, "json": w.text, "ix": dict(w.index or {})}
        coll = self.db[w.type_]
        if w.previous is None:
            try:
                await coll.insert_one({"_id": w.id_, "v": 0, "ts": ts, "json": None, "ix": {},
                                       "ghost": True, "tx": tx, "nx": nxt})
            except DuplicateKeyError:
                raise TransactionConflict(i, key) from None
            return
        if not await self.guarded.update(coll, w.id_, {"v": w.previous, "tx": ABSENT},
                                         {"$set": {"tx": tx, "nx": nxt}}):
            raise TransactionConflict(i, key)

    async def finalise(self, tx: str) -> None:
        record = await self.db[TRANSACTIONS].find_one({"_id": tx})
        if record is None:
            return
        for key in record["keys"]:
            type_, id_, version = key.rsplit("/", 2)
            doc = await self.db[type_].find_one({"_id": id_})
            if doc is not None and doc.get("tx") == tx:
                await self.guarded.replace(self.db[type_], id_, {"tx": tx},
                                           {"_id": id_, **doc["nx"]})
            await settle_version(self.db, type_=type_, id_=id_, version=int(version),
                                 ts=record["created"], targeted=self.guarded.targeted)
        await self.events.settle(record.get("ev", []))
        await self.db[TRANSACTIONS].delete_one({"_id": tx})

    async def roll_back(self, tx: str) -> None:
        record = await self.db[TRANSACTIONS].find_one({"_id": tx})
        keys = record["keys"] if record else []
        for key in keys:
            type_, id_, version = key.rsplit("/", 2)
            await self.guarded.delete(self.db[type_], id_, {"tx": tx, "ghost": True})
            await self.guarded.update(self.db[type_], id_, {"tx": tx},
                                      {"$unset": {"tx": "", "nx": ""}})
            hist = await self.db[HISTORY].find_one(
                version_filter(type_, id_, int(version), targeted=self.guarded.targeted),
                {"tx": 1, "e": 1})
            if hist is not None and hist.get("tx") == tx and "e" in hist:
                await self.events.void([int(hist["e"])])
            await self.guarded.delete(self.db[HISTORY], key, {"tx": tx, "st": PENDING})
        await self.db[TRANSACTIONS].delete_one({"_id": tx})

    async def settle(self, tx: str) -> None:
        """Roll a transaction forward if it committed, back otherwise."""
        if await self.state(tx) == "committed":
            await self.finalise(tx)
        else:
            await self.roll_back(tx)

    async def settle_if_stale(self, tx: str) -> bool:
        """Settle a transaction whose process is gone (``liveness.py``); whether it did."""
        record = await self.db[TRANSACTIONS].find_one({"_id": tx}, {"created": 1, "p": 1})
        if record is None or await self.liveness.may_live(record, created="created"):
            return False
        await self.settle(tx)
        return True

    async def recover(self) -> tuple[int, int, list[str]]:
        """(rolled forward, rolled back, left) transactions left by a crash. A committed
        one is finished (whoever else finishes it too). A pending one is rolled back once
        its process is gone; one whose process may live (another worker's or replica's, in
        flight, or one killed a moment ago) is left to the caller."""
        forward = back = 0
        left: list[str] = []
        async for record in self.db[TRANSACTIONS].find({}):
            if record["state"] == "committed":
                await self.finalise(record["_id"])
                forward += 1
            elif record.get("p") == self.liveness.process:
                continue  # this process's own, in flight
            elif await self.liveness.may_live(record, created="created"):
                left.append(record["_id"])
            else:
                await self.roll_back(record["_id"])
                back += 1
        if forward or back:
            log.warning("transaction recovery rolled_forward=%d rolled_back=%d", forward, back)
        return forward, back, left
