"""The indexes of a MongoDB database: the history collection's, and each type's search
indexes (one per kind of search value that ``filters.py`` maps a query to)."""

from __future__ import annotations

from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.storage.mongo.versions import HISTORY

SEARCH_INDEXES: list[tuple[str, list[tuple[str, int]]]] = [
    ("last_updated", [("ts", DESCENDING)]),
    *[(f"ix_{kind}", [(f"ix.{kind}", 1)])
      for kind in ("tk", "tt", "ot", "st", "sx", "rf", "ri", "ur", "cp", "has")],
    ("ix_dt", [("ix.dt.p", 1), ("ix.dt.lo", 1), ("ix.dt.hi", 1)]),
    ("ix_nm", [("ix.nm.p", 1), ("ix.nm.v", 1)]),
    ("ix_qt", [("ix.qt.p", 1), ("ix.qt.v", 1)]),
    ("ix_cr", [("ix.cr.p", 1), ("ix.cr.k", 1)]),
]


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
        hist = self.db[HISTORY]
        await hist.create_index([("t", 1), ("i", 1), ("v", DESCENDING)], name="resource_versions")
        await hist.create_index([("ts", DESCENDING), ("_id", DESCENDING)], name="system_history")
        await hist.create_index([("t", 1), ("ts", DESCENDING), ("_id", DESCENDING)],
                                name="type_history")
        await hist.create_index([("st", 1)], name="pending", sparse=True)
        await hist.create_index([("tx", 1)], name="transaction", sparse=True)

    async def ensure_type(self, type_: str) -> None:
        """The search indexes of a type's collection."""
        if type_ in self._indexed:
            return
        if self.uses_indexes:
            coll = self.db[type_]
            for name, keys in SEARCH_INDEXES:
                await coll.create_index(keys, name=name)
        self._indexed.add(type_)

    async def ensure_existing(self) -> None:
        for name in await self.db.list_collection_names():
            if name[:1].isupper():
                await self.ensure_type(name)
