"""The indexes of a MongoDB database: the history collection's, the outbox's, and each
type's search indexes (one per kind of search value that ``filters.py`` maps a query to), declared here
as data, so that ``tests/storage/test_mongo_index_use.py`` can hold every filter the
engine sends to them without a server."""

from __future__ import annotations

from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.search.registry import params_for
from fhir_server.storage.mongo.event_log import EVENTS
from fhir_server.storage.mongo.versions import HISTORY

Keys = list[tuple[str, int]]
HISTORY_INDEXES: list[tuple[str, Keys, dict[str, Any]]] = [
    ("resource_versions", [("t", 1), ("i", 1), ("v", DESCENDING)], {}),
    ("system_history", [("ts", DESCENDING), ("_id", DESCENDING)], {}),
    ("type_history", [("t", 1), ("ts", DESCENDING), ("_id", DESCENDING)], {}),
    ("pending", [("st", 1)], {"sparse": True}),
    ("transaction", [("tx", 1)], {"sparse": True}),
]
# The outbox is read by ``_id`` (its number); recovery looks for pending events.
EVENT_INDEXES: list[tuple[str, Keys, dict[str, Any]]] = [
    ("pending", [("st", 1)], {"sparse": True}),
]
SEARCH_INDEXES: list[tuple[str, Keys]] = [
    ("last_updated", [("ts", DESCENDING)]),
    *[(f"ix_{kind}", [(f"ix.{kind}", 1)])
      for kind in ("tk", "tt", "ot", "st", "sx", "rf", "ri", "ur", "cp", "has")],
    ("ix_dt", [("ix.dt.p", 1), ("ix.dt.lo", 1), ("ix.dt.hi", 1)]),
    ("ix_nm", [("ix.nm.p", 1), ("ix.nm.v", 1)]),
    ("ix_qt", [("ix.qt.p", 1), ("ix.qt.v", 1)]),
    ("ix_cr", [("ix.cr.p", 1), ("ix.cr.k", 1)]),
]


def sort_indexes(type_: str) -> list[tuple[str, Keys]]:
    """An index in the order of each date parameter of the type (``_sort=-date``, the
    worklists' order), so that a search nothing narrows, sorted by one, reads a page in
    order instead of sorting the collection; ``_id`` and ``_lastUpdated`` have theirs."""
    return [(f"so_{code}", [(f"ix.so.{code}", 1), ("_id", 1)])
            for code, param in sorted(params_for(type_).items())
            if param.type == "date" and not code.startswith("_")]


def type_indexes(type_: str) -> list[tuple[str, Keys]]:
    """Every index of a type's collection but ``_id``'s."""
    return [*SEARCH_INDEXES, *sort_indexes(type_)]


class Indexes:
    """Creates indexes once per process (``create_index`` is idempotent in the database).

    Search indexes only on engines that use indexes for queries: FerretDB 1.24 on SQLite
    scans for every filter, so an index there would only slow writes.
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]], *, uses_indexes: bool) -> None:
        self.db = db
        self.uses_indexes = uses_indexes
        self._indexed: set[str] = set()

    async def ensure_base(self) -> None:
        for collection, declared in ((HISTORY, HISTORY_INDEXES), (EVENTS, EVENT_INDEXES)):
            for name, keys, options in declared:
                await self.db[collection].create_index(keys, name=name, **options)

    async def ensure_type(self, type_: str) -> None:
        """The search indexes of a type's collection."""
        if type_ in self._indexed:
            return
        if self.uses_indexes:
            coll = self.db[type_]
            for name, keys in type_indexes(type_):
                await coll.create_index(keys, name=name)
        self._indexed.add(type_)

    async def ensure_existing(self) -> None:
        for name in await self.db.list_collection_names():
            if name[:1].isupper():
                await self.ensure_type(name)
