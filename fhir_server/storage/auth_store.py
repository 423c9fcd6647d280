"""The authorization server's collections: keys, clients, users, codes, tokens, launches.

Every document is looked up by ``_id`` (the one lookup FerretDB 1.24 on SQLite
serves from an index); short-lived records carry ``exp`` (epoch seconds) and are
treated as absent once expired, whatever the engine's clean-up does. Single use
(authorization codes, refresh tokens, ``jti``) rests on what every engine does
atomically: one ``delete_one`` by ``_id`` reports whether this caller removed
the record, and one ``insert_one`` reports a duplicate ``_id``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

Doc = dict[str, Any]
Kind = Literal["keys", "clients", "users", "requests", "codes", "refresh", "revoked", "jti",
               "launch", "failures", "records"]

# Expired records are deleted by a sweep at most this often per collection.
PURGE_INTERVAL = 60.0


def now_s() -> int:
    return int(time.time())


class AuthStore:
    """Keyword-only access to the ``auth_*`` collections of one database."""

    def __init__(self, *, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self._purged: dict[str, float] = {}

    def _coll(self, kind: Kind) -> Any:
        return self.db[f"auth_{kind}"]

    async def insert(self, *, kind: Kind, doc: Doc) -> bool:
        """Insert; False when a record with this ``_id`` exists (nothing is changed)."""
        await self._maybe_purge(kind)
        try:
            await self._coll(kind).insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, *, kind: Kind, id_: str) -> Doc | None:
        """The record, or None when absent or expired."""
        doc: Doc | None = await self._coll(kind).find_one({"_id": id_})
        if doc is None or _expired(doc):
            return None
        return doc

    async def take(self, *, kind: Kind, id_: str) -> Doc | None:
        """Remove and return the record; only one caller ever gets it (single use)."""
        doc: Doc | None = await self._coll(kind).find_one({"_id": id_})
        if doc is None:
            return None
        result = await self._coll(kind).delete_one({"_id": id_})
        if result.deleted_count != 1 or _expired(doc):
            return None
        return doc

    async def set_fields(self, *, kind: Kind, id_: str, fields: Doc) -> bool:
        result = await self._coll(kind).update_one({"_id": id_}, {"$set": fields})
        return bool(result.matched_count)

    async def delete(self, *, kind: Kind, id_: str) -> bool:
        result = await self._coll(kind).delete_one({"_id": id_})
        return bool(result.deleted_count)

    async def count(self, *, kind: Kind, id_: str, window: int) -> int:
        """Add one to a counter that starts at the first count and lasts ``window`` seconds;
        returns the new count (concurrent callers each see their own increment)."""
        await self._maybe_purge(kind)
        coll = self._coll(kind)
        doc: Doc | None = await coll.find_one({"_id": id_})
        if doc is not None and _expired(doc):
            await coll.delete_one({"_id": id_, "exp": doc["exp"]})
        result = await coll.find_one_and_update(
            {"_id": id_}, {"$inc": {"count": 1}, "$setOnInsert": {"exp": now_s() + window}},
            upsert=True, return_document=True)
        return int(result["count"]) if result else 1

    async def counted(self, *, kind: Kind, id_: str) -> int:
        doc = await self.get(kind=kind, id_=id_)
        return int(doc["count"]) if doc else 0

    async def all(self, *, kind: Kind) -> list[Doc]:
        """Every unexpired record (for the small collections: keys, revocations)."""
        return [d async for d in self._coll(kind).find({}) if not _expired(d)]

    async def _maybe_purge(self, kind: Kind) -> None:
        last = self._purged.get(kind, 0.0)
        if time.monotonic() - last < PURGE_INTERVAL:
            return
        self._purged[kind] = time.monotonic()
        await self._coll(kind).delete_many({"exp": {"$lt": now_s()}})


def _expired(doc: Doc) -> bool:
    exp = doc.get("exp")
    return isinstance(exp, int | float) and exp <= now_s()
