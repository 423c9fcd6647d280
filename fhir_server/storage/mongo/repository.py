"""The repository on MongoDB (FerretDB in tests): current versions, history, crash-safe writes.

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
* ``events`` is the outbox: one change event per committed version,
  ``{_id: "<number in 20 digits>", t, i, v, a, ts}`` (``event_log.py``,
  ``outbox.py``).

Writes without multi-document transactions
------------------------------------------
A single write is staged, committed by moving its current document, then
settled (``single_write.py``); several are committed all or nothing through
a transaction record (``transactions.py``). Each appends its change event
(``event_log.py``) as part of the staged write, so an event exists exactly
when its change is finalised; ``outbox.py`` reads them. What a crash leaves
pending is settled at the next start (``recovery.py``). The same protocols
run on MongoDB and FerretDB, so one code path is tested everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from functools import partial
from typing import Any

from pymongo import DESCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from fhir_server.search.evaluate import evaluate
from fhir_server.search.query import Ids, Query, SortKey, and_
from fhir_server.storage.locks import Locks
from fhir_server.storage.model import ChangeEvent, StoredVersion, now_ms
from fhir_server.storage.mongo.concepts import MongoConcepts
from fhir_server.storage.mongo.engine import UNAVAILABLE_ERRORS, MongoEngine
from fhir_server.storage.mongo.event_log import EventLog
from fhir_server.storage.mongo.filters import (
    Filter,
    by_id,
    has_elements,
    search_filter,
    sort_fields,
    without_elements,
)
from fhir_server.storage.mongo.guarded import Guarded
from fhir_server.storage.mongo.indexes import Indexes
from fhir_server.storage.mongo.liveness import Liveness
from fhir_server.storage.mongo.outbox import Outbox
from fhir_server.storage.mongo.records import MongoRecords
from fhir_server.storage.mongo.recovery import Recovery
from fhir_server.storage.mongo.single_write import SingleWrites
from fhir_server.storage.mongo.transactions import TransactionLog
from fhir_server.storage.mongo.versions import HISTORY, PENDING, version_filter
from fhir_server.storage.repository import (
    Current,
    HistoryCursor,
    HistoryPage,
    HistoryPlan,
    PlannedWrite,
    Repository,
    history_key,
)
from fhir_server.storage.resolve import needs_resolving, resolve

Doc = dict[str, Any]


def _version_from(doc: Mapping[str, Any], type_: str, id_: str) -> StoredVersion:
    return StoredVersion(type_=type_, id_=id_, version=int(doc["v"]), last_updated=doc["ts"],
                         text=doc.get("json"), method=str(doc.get("m", "PUT")))


def _history_version(doc: Mapping[str, Any]) -> StoredVersion:
    return _version_from(doc, str(doc["t"]), str(doc["i"]))


def _dotted(doc: Mapping[str, Any], path: str) -> Any:
    current: Any = doc
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _sort_key(doc: Mapping[str, Any], path: str) -> tuple[int, Any]:
    value = _dotted(doc, path)
    # Missing values sort first ascending, as MongoDB sorts null.
    return (0, "") if value is None else (1, value)


def history_filter(plan: HistoryPlan) -> Filter:
    """The filter of a history listing (without its page's keyset condition)."""
    filt: Doc = {"st": {"$exists": False}}
    if plan.type_ is not None:
        filt["t"] = plan.type_
    elif plan.excluded:
        filt["t"] = {"$nin": list(plan.excluded)}
    if plan.id_ is not None:
        filt["i"] = plan.id_
    ts: Doc = {"$lte": plan.as_of}
    if plan.since is not None:
        ts["$gte"] = plan.since
    if plan.at is not None:
        ts["$lt"] = plan.at[1]
        filt["$or"] = [{"until": {"$exists": False}}, {"until": {"$gt": plan.at[0]}}]
    filt["ts"] = ts
    return filt


class MongoRepository(Repository):
    """The repository on MongoDB (and FerretDB). One instance per database."""

    def __init__(self, *, client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc],
                 engine: MongoEngine) -> None:
        self.client = client
        self.db = db
        self.mongo = engine
        self.engine = engine.info
        self.guarded = Guarded(local_locks=not engine.uses_indexes)
        self.records = MongoRecords(db, self.guarded)
        self.liveness = Liveness(self.records)
        self.event_log = EventLog(db, self.guarded, self.liveness,
                                  uses_indexes=engine.uses_indexes)
        self.transactions = TransactionLog(db, self.guarded, self.liveness, self.event_log)
        self.outbox = Outbox(db=db, guarded=self.guarded, liveness=self.liveness,
                             log=self.event_log, transactions=self.transactions)
        self.locks = Locks(self.records)
        self.concepts: MongoConcepts = MongoConcepts(db, engine, self.guarded)
        self.indexes = Indexes(db, uses_indexes=engine.uses_indexes)
        self.recovery = Recovery(db=db, guarded=self.guarded, liveness=self.liveness,
                                 transactions=self.transactions, lease=self.locks.lease)
        self.single = SingleWrites(db=db, guarded=self.guarded, liveness=self.liveness,
                                   events=self.event_log, recovery=self.recovery)

    async def open(self) -> None:
        await self.indexes.ensure_base()
        await self.concepts.create_indexes()
        await self.liveness.start(self.locks)
        await self.event_log.open()
        await self.recover()
        await self.indexes.ensure_existing()

    async def close(self) -> None:
        await self.recovery.stop()
        with suppress(*UNAVAILABLE_ERRORS):  # a database already gone: its lease lapses
            await self.liveness.stop()
        await self.client.close()

    async def ping(self) -> None:
        await self.client.admin.command("ping")

    # -- indexes and recovery -------------------------------------------------

    async def ensure_type_indexes(self, type_: str) -> None:
        await self.indexes.ensure_type(type_)

    async def recover(self) -> tuple[int, int]:
        """Settle writes left pending by a crash (``recovery.py``): (forward, back); then
        their events (``outbox.py``)."""
        settled = await self.recovery.recover()
        await self.outbox.recover()
        return settled

    # -- reads ----------------------------------------------------------------

    async def _visible(self, doc: Doc | None) -> Doc | None:
        """What readers see of a current document that a transaction may have staged."""
        if doc is None or "tx" not in doc:
            return doc
        if await self.transactions.state(doc["tx"]) == "committed":
            return {"_id": doc["_id"], **doc["nx"]}
        return None if doc.get("ghost") else doc

    async def current(self, *, type_: str, id_: str) -> StoredVersion | None:
        doc = await self._visible(await self.db[type_].find_one(by_id(id_), {"ix": 0}))
        return None if doc is None else _version_from(doc, type_, id_)

    async def version(self, *, type_: str, id_: str, version: int) -> StoredVersion | None:
        doc = await self.db[HISTORY].find_one(
            version_filter(type_, id_, version, targeted=self.guarded.targeted))
        if doc is None:
            return None
        if doc.get("st") == PENDING and "tx" in doc:
            if await self.transactions.state(doc["tx"]) != "committed":
                return None
        elif doc.get("st") == PENDING:
            cur = await self.db[type_].find_one(by_id(id_), {"v": 1})
            if cur is None or int(cur["v"]) < version:
                return None
        return _history_version(doc)

    async def _filter(self, query: Query) -> Filter:
        if needs_resolving(query):
            query = await resolve(self, query)
        return search_filter(query)

    def _in_python(self, query: Query) -> bool:
        """FerretDB cannot run element conditions: it gets the rest, Python judges the whole."""
        return not self.mongo.elem_match_subdocuments and has_elements(query)

    async def _python_rows(self, type_: str, query: Query) -> list[Doc]:
        pushed = await self._filter(without_elements(query))
        wide = {"_id": 1, "ix": 1, "ts": 1}
        return [d async for d in self.db[type_].find(pushed, wide)
                if evaluate(query, id_=str(d["_id"]), index=d.get("ix") or {}, ts=d.get("ts"))]

    async def search(self, *, type_: str, query: Query, sort: Sequence[SortKey],
                     limit: int) -> list[str]:
        if needs_resolving(query):
            query = await resolve(self, query)
        fields = sort_fields(sort)
        if not self._in_python(query):
            cursor = self.db[type_].find(await self._filter(query), {"_id": 1})
            if fields:
                cursor = cursor.sort(fields)
            return [str(d["_id"]) async for d in cursor.limit(limit)]
        rows = await self._python_rows(type_, query)
        for path, direction in reversed(fields):
            rows.sort(key=partial(_sort_key, path=path), reverse=direction < 0)
        return [str(d["_id"]) for d in rows[:limit]]

    async def count(self, *, type_: str, query: Query) -> int:
        if needs_resolving(query):
            query = await resolve(self, query)
        if not self._in_python(query):
            return await self.db[type_].count_documents(await self._filter(query))
        return len(await self._python_rows(type_, query))

    async def matches(self, *, type_: str, id_: str, query: Query) -> bool:
        return bool(await self.search(type_=type_, query=and_(Ids((id_,)), query), sort=(),
                                      limit=1))

    async def fetch(self, *, type_: str, ids: Sequence[str],
                    where: Query | None = None) -> list[StoredVersion]:
        """Current, not deleted versions of the given ids, in the given order."""
        if not ids:
            return []
        if where is not None:
            kept = set(await self.search(type_=type_, query=and_(Ids(tuple(ids)), where),
                                         sort=(), limit=len(ids)))
            ids = [i for i in ids if i in kept]
        projection = {"v": 1, "ts": 1, "m": 1, "json": 1}
        if self.mongo.uses_indexes:
            found = {d["_id"]: d async for d in self.db[type_].find(
                {"_id": {"$in": list(ids)}, "json": {"$ne": None}}, projection)}
        else:  # FerretDB pushes down only a lone _id equality: one lookup each beats a scan
            docs = [await self.db[type_].find_one({"_id": i}, projection) for i in ids]
            found = {d["_id"]: d for d in docs if d is not None and d.get("json") is not None}
        return [_version_from(found[i], type_, i) for i in ids if i in found]

    async def references(self, *, type_: str, ids: Sequence[str],
                         prefix: str = "") -> dict[str, list[str]]:
        if self.mongo.uses_indexes:
            docs = [d async for d in self.db[type_].find(
                {"_id": {"$in": list(ids)}, "json": {"$ne": None}}, {"ix.rf": 1})]
        else:  # one lookup by exactly _id each: the one query FerretDB serves from an index
            found = [await self.db[type_].find_one({"_id": i}, {"ix.rf": 1}) for i in ids]
            docs = [d for d in found if d is not None]  # a deletion has no search values
        return {str(d["_id"]): [r for r in (d.get("ix") or {}).get("rf", [])
                                if r.startswith(prefix)] for d in docs}

    async def history(
        self,
        *,
        type_: str | None = None,
        id_: str | None = None,
        since: datetime | None = None,
        at: tuple[datetime, datetime] | None = None,
        count: int,
        cursor: HistoryCursor | None = None,
        exclude_types: frozenset[str] = frozenset(),
    ) -> HistoryPage:
        """A page of versions, newest first, with keyset paging on (ts, _id): the key of a
        version is its ``_id`` (``storage/history.py``)."""
        plan = HistoryPlan.of(type_=type_, id_=id_, since=since, at=at, count=count,
                              cursor=cursor, exclude_types=exclude_types)
        filt = history_filter(plan)
        total = await self.db[HISTORY].count_documents(filt)
        page_filter = filt
        if plan.after is not None:
            ts, key = plan.after
            after = {"$or": [{"ts": {"$lt": ts}}, {"ts": ts, "_id": {"$lt": key}}]}
            page_filter = {"$and": [filt, after]}
        docs = [
            d async for d in self.db[HISTORY]
            .find(page_filter)
            .sort([("ts", DESCENDING), ("_id", DESCENDING)])
            .limit(plan.limit)
        ]
        return plan.page(total=total, rows=[(_history_version(d), str(d["_id"])) for d in docs])

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
        return await self.single.write(PlannedWrite(type_, id_, previous, text, index, method),
                                       ts=ts or now_ms())

    async def commit_transaction(self, writes: list[PlannedWrite], *, ts: datetime,
                                 side_effects: Sequence[PlannedWrite] = ()
                                 ) -> list[StoredVersion]:
        """Commit ``writes`` and the server's own ``side_effects`` of them all or nothing
        (a scoped repository checks only ``writes`` against the caller's token)."""
        everything = [*writes, *side_effects]
        for w in everything:
            await self.ensure_type_indexes(w.type_)
        return await self.transactions.commit(everything, ts=ts)

    # -- the outbox (outbox.py) ----------------------------------------------------------

    async def events(self, *, after: int, limit: int) -> list[ChangeEvent]:
        return await self.outbox.events(after=after, limit=limit)

    async def last_event(self) -> int:
        return await self.outbox.last()

    async def purge_events(self, *, before: datetime, upto: int) -> int:
        return await self.outbox.purge(before=before, upto=upto)

    async def types(self) -> list[str]:
        return sorted(n for n in await self.db.list_collection_names() if n[:1].isupper())

    async def peek(self, *, type_: str, id_: str) -> Current | None:
        doc = await self._visible(await self.db[type_].find_one(
            by_id(id_), {"v": 1, "json": 1, "tx": 1, "nx.v": 1, "nx.json": 1, "ghost": 1}))
        if doc is None:
            return None
        return Current(version=int(doc["v"]), deleted=doc.get("json") is None)

    async def append_new(self, *, type_: str,
                         items: Sequence[tuple[str, str, Mapping[str, Any]]],
                         ts: datetime) -> int:
        """The current documents, then their history versions, each one ``insert_many``
        that skips what exists. A crash in between leaves some without history; the
        caller's replay (the audit journal) writes what is missing."""
        if not items:
            return 0
        await self.ensure_type_indexes(type_)
        current = [{"_id": id_, "v": 1, "ts": ts, "m": "POST", "json": text,
                    "ix": dict(index)} for id_, text, index in items]
        history = [{"_id": history_key(type_, id_, 1), "t": type_, "i": id_, "v": 1, "ts": ts,
                    "m": "POST", "json": text} for id_, text, _ in items]
        stored = await _insert_new(self.db[type_], current)
        await _insert_new(self.db[HISTORY], history)
        return stored


async def _insert_new(coll: Any, docs: list[Doc]) -> int:
    """Insert what is not there yet (by _id); how many were inserted."""
    try:
        return len((await coll.insert_many(docs, ordered=False)).inserted_ids)
    except BulkWriteError as error:
        details = error.details or {}
        if any(e.get("code") != 11000 for e in details.get("writeErrors", [])):
            raise
        return int(details.get("nInserted", 0))
