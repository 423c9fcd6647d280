"""The authorization server's records: keys, clients, users, codes, tokens, launches.

Every record is looked up by ``_id``; short-lived records carry ``exp`` (epoch
seconds) and are treated as absent once expired, whatever the sweep has done.
Single use (authorization codes, refresh tokens, ``jti``) rests on what every
engine does atomically (``storage/records.py``): one ``delete`` reports whether
this caller removed the record, and one ``insert`` reports a duplicate ``_id``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fhir_server.storage.records import Records

Doc = dict[str, Any]
Kind = Literal["keys", "clients", "users", "requests", "codes", "refresh", "refresh_used",
               "refresh_revoked", "revoked", "jti", "launch", "failures"]

# Expired records are deleted by a sweep at most this often per kind.
PURGE_INTERVAL = 60.0


def now_s() -> int:
    return int(time.time())


class AuthStore:
    """Keyword-only access to the ``auth_*`` records of one database."""

    def __init__(self, *, records: Records) -> None:
        self.records = records
        self._purged: dict[str, float] = {}

    async def insert(self, *, kind: Kind, doc: Doc) -> bool:
        """Insert; False when a record with this ``_id`` exists (nothing is changed)."""
        await self._maybe_purge(kind)
        return await self.records.insert(kind=f"auth_{kind}", doc=doc)

    async def get(self, *, kind: Kind, id_: str) -> Doc | None:
        """The record, or None when absent or expired."""
        doc = await self.records.get(kind=f"auth_{kind}", id_=id_)
        if doc is None or _expired(doc):
            return None
        return doc

    async def take(self, *, kind: Kind, id_: str) -> Doc | None:
        """Remove and return the record; only one caller ever gets it (single use)."""
        doc = await self.records.get(kind=f"auth_{kind}", id_=id_)
        if doc is None:
            return None
        if not await self.records.delete(kind=f"auth_{kind}", id_=id_) or _expired(doc):
            return None
        return doc

    async def set_fields(self, *, kind: Kind, id_: str, fields: Doc) -> bool:
        return await self.records.set_fields(kind=f"auth_{kind}", id_=id_, fields=fields)

    async def delete(self, *, kind: Kind, id_: str) -> bool:
        return await self.records.delete(kind=f"auth_{kind}", id_=id_)

    async def count(self, *, kind: Kind, id_: str, window: int) -> int:
        """Add one to a counter that starts at the first count and lasts ``window`` seconds;
        returns the new count (concurrent callers each see their own increment)."""
        await self._maybe_purge(kind)
        doc = await self.records.get(kind=f"auth_{kind}", id_=id_)
        if doc is not None and _expired(doc):
            await self.records.delete(kind=f"auth_{kind}", id_=id_, expect={"exp": doc["exp"]})
        after = await self.records.increment(kind=f"auth_{kind}", id_=id_, field="count",
                                             on_insert={"exp": now_s() + window})
        return int(after.get("count", 1))

    async def uncount(self, *, kind: Kind, id_: str) -> None:
        """Take back one count (of a counter that exists)."""
        if await self.get(kind=kind, id_=id_) is not None:
            await self.records.increment(kind=f"auth_{kind}", id_=id_, field="count",
                                         on_insert={"exp": now_s()}, by=-1)

    async def counted(self, *, kind: Kind, id_: str) -> int:
        doc = await self.get(kind=kind, id_=id_)
        return int(doc["count"]) if doc else 0

    async def all(self, *, kind: Kind) -> list[Doc]:
        """Every unexpired record (for the small kinds: keys, revocations)."""
        return [d for d in await self.records.all(kind=f"auth_{kind}") if not _expired(d)]

    async def _maybe_purge(self, kind: Kind) -> None:
        last = self._purged.get(kind, 0.0)
        if time.monotonic() - last < PURGE_INTERVAL:
            return
        self._purged[kind] = time.monotonic()
        await self.records.purge(kind=f"auth_{kind}", before=now_s())


def _expired(doc: Doc) -> bool:
    exp = doc.get("exp")
    return isinstance(exp, int | float) and exp <= now_s()
