"""Named leases shared by every server process on one database.

A write rule that must check-then-write (no two overlapping bookings of one
practitioner) holds a lease on each name it depends on while it checks and
writes. A lease is a document ``{_id: name, owner, expires}`` in ``locks``:
inserting it is the atomic "take" (``_id`` is unique on every engine);
releasing deletes it only if this holder still owns it. A holder that died
leaves a lease that expires after ``LEASE_SECONDS`` and is then taken over.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from fhir_server.storage.guarded import Guarded
from fhir_server.storage.model import now_ms

LOCKS = "locks"
LEASE_SECONDS = 30


class LockBusy(Exception):
    """A lease stayed taken for longer than the caller would wait."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Locks:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], guarded: Guarded) -> None:
        self.coll = db[LOCKS]
        self.guarded = guarded

    @asynccontextmanager
    async def hold(self, names: Iterable[str], *, wait: float = 10.0) -> AsyncIterator[None]:
        """Hold every name (taken in sorted order, so two holders cannot deadlock)."""
        owner = uuid.uuid4().hex
        taken: list[str] = []
        deadline = asyncio.get_running_loop().time() + wait
        try:
            for name in sorted(set(names)):
                await self._take(name, owner, deadline)
                taken.append(name)
            yield
        finally:
            for name in reversed(taken):
                await self.guarded.delete(self.coll, name, {"owner": owner})

    async def _take(self, name: str, owner: str, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            now = now_ms()
            try:
                await self.coll.insert_one({"_id": name, "owner": owner,
                                            "expires": now + timedelta(seconds=LEASE_SECONDS)})
                return
            except DuplicateKeyError:
                pass
            held = await self.coll.find_one({"_id": name})
            if held is not None and held["expires"] <= now:
                await self.guarded.delete(self.coll, name, {"owner": held["owner"]})
                continue
            if loop.time() >= deadline:
                raise LockBusy(name)
            attempt += 1
            await asyncio.sleep(random.uniform(0.005, min(0.2, 0.01 * 2 ** min(attempt, 5))))
