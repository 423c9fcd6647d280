"""One resource's write on MongoDB without multi-document transactions, crash-safe.

A write appends its change event marked pending (``event_log.py``), inserts the new
history version marked pending (``st: "p"``, naming the event's number ``e``), then moves
the current document with an optimistic check on its version (the commit point), then
clears the version's mark (and sets ``until`` on the replaced version) in one bulk
request, then the event's. Readers treat a pending version as committed only when the
current document has reached it, and read no event past a pending one. A write that fails
before its commit point deletes its version and voids its event. If the process dies in
between, ``recover()`` at the next start rolls each pending version forward (the current
document reached it) or back (it did not), and its event with it (``recovery.py``,
``outbox.py``). The same protocol runs on MongoDB and FerretDB, so one code path is tested
everywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from fhir_server.storage.model import StoredVersion
from fhir_server.storage.mongo.event_log import EventLog
from fhir_server.storage.mongo.fencing import check_fences
from fhir_server.storage.mongo.guarded import ABSENT, Guarded
from fhir_server.storage.mongo.liveness import Liveness
from fhir_server.storage.mongo.recovery import Recovery
from fhir_server.storage.mongo.versions import HISTORY, PENDING, settle_version
from fhir_server.storage.repository import PlannedWrite, VersionConflict, history_key

Doc = dict[str, Any]


class SingleWrites:
    def __init__(self, *, db: AsyncDatabase[Doc], guarded: Guarded, liveness: Liveness,
                 events: EventLog, recovery: Recovery) -> None:
        self.db = db
        self.guarded = guarded
        self.liveness = liveness
        self.events = events
        self.recovery = recovery

    async def write(self, w: PlannedWrite, *, ts: datetime) -> StoredVersion:
        """Write the next version after ``w.previous``; VersionConflict when another writer
        got there first (nothing of this write is then visible)."""
        version = (w.previous or 0) + 1
        action = await self.events.action(type_=w.type_, id_=w.id_, previous=w.previous,
                                          text=w.text)
        event = await self.events.append(type_=w.type_, id_=w.id_, version=version, ts=ts,
                                         action=action)
        try:
            await self._commit(w, version, ts, event)
        except BaseException:
            await self.events.void([event])
            raise
        try:
            await settle_version(self.db, type_=w.type_, id_=w.id_, version=version, ts=ts,
                                 targeted=self.guarded.targeted)
        finally:  # committed either way: readers take a pending version the current reached
            await self.events.settle([event])
        return StoredVersion(type_=w.type_, id_=w.id_, version=version, last_updated=ts,
                             text=w.text, method=w.method)

    async def _commit(self, w: PlannedWrite, version: int, ts: datetime, event: int) -> None:
        """The pending history version, the fence check, then the commit point."""
        key = history_key(w.type_, w.id_, version)
        try:
            await self.db[HISTORY].insert_one({
                "_id": key, "t": w.type_, "i": w.id_, "v": version, "ts": ts, "m": w.method,
                "json": w.text, "st": PENDING, "p": self.liveness.process, "e": event})
        except DuplicateKeyError:
            # Either a concurrent writer holds this version, or a writer died
            # holding it (another process's crash): settle it if it is stale.
            await self.recovery.settle_stale(key, w.type_, w.id_)
            raise VersionConflict(key) from None
        current: Doc = {"_id": w.id_, "v": version, "ts": ts, "m": w.method, "json": w.text,
                        "ix": dict(w.index or {})}
        try:
            await check_fences(self.db, self.guarded)  # before the commit point, just below
            if w.previous is None:
                try:
                    await self.db[w.type_].insert_one(current)
                except DuplicateKeyError:
                    await self.recovery.settle_stale_transaction(w.type_, w.id_)
                    raise VersionConflict(key) from None
            elif not await self.guarded.replace(self.db[w.type_], w.id_,
                                                {"v": w.previous, "tx": ABSENT}, current):
                await self.recovery.settle_stale_transaction(w.type_, w.id_)
                raise VersionConflict(key)
        except BaseException:
            await self.guarded.delete(self.db[HISTORY], key, {"st": PENDING})
            raise
