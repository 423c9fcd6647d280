"""The resource repository: current versions, immutable history, crash-safe writes.

Layout
------
* One collection per resource type (``Patient``, ``Claim``, ...) holds the
  current version of each resource: ``{_id: id, v, ts, m, json, ix}`` where
  ``json`` is the resource text exactly as served (client JSON plus server
  ``meta``), ``json`` is null for a deleted resource, and ``ix`` holds the
  search values extracted at write time.
* One ``history`` collection holds every version of every resource:
  ``{_id: "Type/id/v", t, i, v, ts, m, json, until}``; ``until`` is the
  instant a later version replaced it.

Writes without multi-document transactions
------------------------------------------
A write inserts the new history version marked pending (``st: "p"``),
then moves the current document with an optimistic check on its version,
then clears the mark (and sets ``until`` on the replaced version) in one
bulk request. Readers treat a pending version as committed only when the
current document has reached it. If the process dies in between,
``recover()`` at the next start rolls each pending version forward (the
current document reached it) or back (it did not). The same protocol runs
on MongoDB and FerretDB, so one code path is tested everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from fhir_server.storage.engine import EngineInfo
from fhir_server.storage.model import StoredVersion, now_ms

log = logging.getLogger("fhir_server.storage")

HISTORY = "history"
PENDING = "p"
# A pending version older than this was left by a writer that died.
STALE_PENDING_SECONDS = 30

Doc = dict[str, Any]


class VersionConflict(Exception):
    """Another writer changed the resource first (optimistic check failed)."""


@dataclass(frozen=True)
class Current:
    """The current state of one resource: its version and whether it is deleted."""

    version: int
    deleted: bool


@dataclass(frozen=True)
class HistoryCursor:
    """Where a history page ends: the snapshot instant and the last (ts, _id) served."""

    as_of: datetime
    ts: datetime | None = None
    key: str | None = None


@dataclass(frozen=True)
class HistoryPage:
    versions: list[StoredVersion]
    total: int
    next_cursor: HistoryCursor | None


def _version_from(doc: Mapping[str, Any], type_: str, id_: str) -> StoredVersion:
    return StoredVersion(type_=type_, id_=id_, version=int(doc["v"]), last_updated=doc["ts"],
                         text=doc.get("json"), method=str(doc.get("m", "PUT")))


def _history_version(doc: Mapping[str, Any]) -> StoredVersion:
    return _version_from(doc, str(doc["t"]), str(doc["i"]))


def history_key(type_: str, id_: str, version: int) -> str:
    return f"{type_}/{id_}/{version}"


class Repository:
    """Reads and writes resources. Keyword-only; one instance per database."""

    def __init__(self, *, db: AsyncDatabase[Doc], engine: EngineInfo) -> None:
        self.db = db
        self.engine = engine
        self._indexed: set[str] = set()

    # -- indexes and recovery -------------------------------------------------

    async def ensure_base_indexes(self) -> None:
        hist = self.db[HISTORY]
        await hist.create_index([("t", 1), ("i", 1), ("v", DESCENDING)], name="resource_versions")
        await hist.create_index([("ts", DESCENDING), ("_id", DESCENDING)], name="system_history")
        await hist.create_index([("t", 1), ("ts", DESCENDING), ("_id", DESCENDING)],
                                name="type_history")
        await hist.create_index([("st", 1)], name="pending", sparse=True)

    async def ensure_type_indexes(self, type_: str) -> None:
        if type_ in self._indexed:
            return
        coll = self.db[type_]
        await coll.create_index([("ix.identifier", 1)], name="identifier")
        await coll.create_index([("ts", DESCENDING)], name="last_updated")
        self._indexed.add(type_)

    async def recover(self) -> tuple[int, int]:
        """Settle versions left pending by a crash: (rolled forward, rolled back)."""
        forward = back = 0
        async for doc in self.db[HISTORY].find({"st": PENDING}):
            cur = await self.db[doc["t"]].find_one({"_id": doc["i"]}, {"v": 1})
            if cur is not None and int(cur["v"]) >= int(doc["v"]):
                await self._settle(doc["t"], doc["i"], int(doc["v"]), doc["ts"])
                forward += 1
            else:
                await self.db[HISTORY].delete_one({"_id": doc["_id"], "st": PENDING})
                back += 1
        if forward or back:
            log.warning("recovery rolled_forward=%d rolled_back=%d", forward, back)
        return forward, back

    # -- reads ----------------------------------------------------------------

    async def current(self, *, type_: str, id_: str) -> StoredVersion | None:
        doc = await self.db[type_].find_one({"_id": id_}, {"ix": 0})
        return None if doc is None else _version_from(doc, type_, id_)

    async def version(self, *, type_: str, id_: str, version: int) -> StoredVersion | None:
        doc = await self.db[HISTORY].find_one({"_id": history_key(type_, id_, version)})
        if doc is None:
            return None
        if doc.get("st") == PENDING:
            cur = await self.db[type_].find_one({"_id": id_}, {"v": 1})
            if cur is None or int(cur["v"]) < version:
                return None
        return _history_version(doc)

    async def find_ids(self, *, type_: str, query: Mapping[str, Any], limit: int) -> list[str]:
        """Ids of current, not deleted resources matching a compiled search filter."""
        filt = {**query, "json": {"$ne": None}}
        return [str(d["_id"]) async for d in self.db[type_].find(filt, {"_id": 1}).limit(limit)]

    async def search(self, *, type_: str, query: Mapping[str, Any], skip: int,
                     limit: int, count_total: bool) -> tuple[list[StoredVersion], int | None]:
        """A page of current, not deleted resources matching a compiled filter, by id."""
        filt = {**query, "json": {"$ne": None}}
        total = await self.db[type_].count_documents(filt) if count_total else None
        if limit <= 0:
            return [], total
        docs = self.db[type_].find(filt, {"ix": 0}).sort("_id", 1).skip(skip).limit(limit)
        return [_version_from(d, type_, str(d["_id"])) async for d in docs], total

    async def exists(self, *, type_: str, id_: str) -> bool:
        doc = await self.db[type_].find_one({"_id": id_, "json": {"$ne": None}}, {"_id": 1})
        return doc is not None

    async def history(
        self,
        *,
        type_: str | None = None,
        id_: str | None = None,
        since: datetime | None = None,
        at: tuple[datetime, datetime] | None = None,
        count: int,
        cursor: HistoryCursor | None = None,
    ) -> HistoryPage:
        """A page of versions, newest first, with keyset paging on (ts, _id).

        Every page of one listing answers as of the first page's instant, so
        writes made while a client pages neither shift pages nor change the total.
        """
        cursor = cursor or HistoryCursor(as_of=now_ms())
        filt: Doc = {"st": {"$exists": False}}
        if type_ is not None:
            filt["t"] = type_
        if id_ is not None:
            filt["i"] = id_
        ts: Doc = {"$lte": cursor.as_of}
        if since is not None:
            ts["$gte"] = since
        if at is not None:
            # Versions current at some moment of [low, high): written before high,
            # and not replaced before low.
            ts["$lt"] = at[1]
            filt["$or"] = [{"until": {"$exists": False}}, {"until": {"$gt": at[0]}}]
        filt["ts"] = ts
        total = await self.db[HISTORY].count_documents(filt)
        page_filter = filt
        if cursor.ts is not None:
            after = {"$or": [{"ts": {"$lt": cursor.ts}},
                             {"ts": cursor.ts, "_id": {"$lt": cursor.key}}]}
            page_filter = {"$and": [filt, after]}
        docs = [
            d async for d in self.db[HISTORY]
            .find(page_filter)
            .sort([("ts", DESCENDING), ("_id", DESCENDING)])
            .limit(count + 1)
        ]
        more = len(docs) > count
        docs = docs[:count]
        nxt = (HistoryCursor(as_of=cursor.as_of, ts=docs[-1]["ts"], key=str(docs[-1]["_id"]))
               if more and docs else None)
        return HistoryPage(versions=[_history_version(d) for d in docs], total=total,
                           next_cursor=nxt)

    # -- writes ---------------------------------------------------------------

    async def write(
        self,
        *,
        type_: str,
        id_: str,
        previous: int | None,
        text: str | None,
        index: Mapping[str, Any] | None,
        method: str,
        ts: datetime | None = None,
    ) -> StoredVersion:
        """Write the next version after ``previous`` (None: the resource is new).

        ``text`` None writes a deletion. Raises VersionConflict when another
        writer got there first; nothing of this write is then visible.
        """
        await self.ensure_type_indexes(type_)
        version = (previous or 0) + 1
        ts = ts or now_ms()
        key = history_key(type_, id_, version)
        hist: Doc = {"_id": key, "t": type_, "i": id_, "v": version, "ts": ts, "m": method,
                     "json": text, "st": PENDING}
        current: Doc = {"_id": id_, "v": version, "ts": ts, "m": method, "json": text,
                        "ix": dict(index or {})}
        try:
            await self.db[HISTORY].insert_one(hist)
        except DuplicateKeyError:
            # Either a concurrent writer holds this version, or a writer died
            # holding it (another process's crash): settle it if it is stale.
            await self._settle_stale(key, type_, id_)
            raise VersionConflict(key) from None
        try:
            if previous is None:
                try:
                    await self.db[type_].insert_one(current)
                except DuplicateKeyError:
                    raise VersionConflict(key) from None
            else:
                res = await self.db[type_].replace_one({"_id": id_, "v": previous}, current)
                if res.matched_count != 1:
                    raise VersionConflict(key)
        except BaseException:
            await self.db[HISTORY].delete_one({"_id": key, "st": PENDING})
            raise
        await self._settle(type_, id_, version, ts)
        return StoredVersion(type_=type_, id_=id_, version=version, last_updated=ts, text=text,
                             method=method)

    async def _settle(self, type_: str, id_: str, version: int, ts: datetime) -> None:
        ops = [UpdateOne({"_id": history_key(type_, id_, version)}, {"$unset": {"st": ""}})]
        if version > 1:
            ops.append(UpdateOne({"_id": history_key(type_, id_, version - 1)},
                                 {"$set": {"until": ts}}))
        await self.db[HISTORY].bulk_write(ops, ordered=False)

    async def _settle_stale(self, key: str, type_: str, id_: str) -> None:
        doc = await self.db[HISTORY].find_one({"_id": key, "st": PENDING})
        if doc is None or (now_ms() - doc["ts"]).total_seconds() < STALE_PENDING_SECONDS:
            return
        cur = await self.db[type_].find_one({"_id": id_}, {"v": 1})
        if cur is not None and int(cur["v"]) >= int(doc["v"]):
            await self._settle(type_, id_, int(doc["v"]), doc["ts"])
        else:
            await self.db[HISTORY].delete_one({"_id": key, "st": PENDING})

    async def peek(self, *, type_: str, id_: str) -> Current | None:
        doc = await self.db[type_].find_one({"_id": id_}, {"v": 1, "json": 1})
        if doc is None:
            return None
        return Current(version=int(doc["v"]), deleted=doc.get("json") is None)
