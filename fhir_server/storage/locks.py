"""Named leases shared by every server process on one database.

A write rule that must check-then-write (no two overlapping bookings of one
practitioner) holds a lease on each name it depends on while it checks and
writes. A lease is a record ``{_id: name, owner, expires}`` of kind ``locks``:
inserting it is the atomic "take" (every engine refuses a duplicate ``_id``);
releasing deletes it only if this holder still owns it. A holder that died
leaves a lease that expires after ``LEASE_SECONDS`` and is then taken over.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fhir_server.storage.records import Records

LOCKS = "locks"
LEASE_SECONDS = 30


class LockBusy(Exception):
    """A lease stayed taken for longer than the caller would wait."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Locks:
    def __init__(self, records: Records) -> None:
        self.records = records

    @asynccontextmanager
    async def hold(self, names: Iterable[str], *, wait: float = 10.0,
                   lease: float = LEASE_SECONDS) -> AsyncIterator[None]:
        """Hold every name (taken in sorted order, so two holders cannot deadlock); a holder
        that dies leaves them for ``lease`` seconds at most."""
        owner = uuid.uuid4().hex
        taken: list[str] = []
        deadline = asyncio.get_running_loop().time() + wait
        try:
            for name in sorted(set(names)):
                await self._take(name, owner, deadline, lease)
                taken.append(name)
            yield
        finally:
            for name in reversed(taken):
                await self.records.delete(kind=LOCKS, id_=name, expect={"owner": owner})

    async def _take(self, name: str, owner: str, deadline: float, lease: float) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            now = time.time()
            if await self.records.insert(kind=LOCKS, doc={"_id": name, "owner": owner,
                                                          "expires": now + lease}):
                return
            held = await self.records.get(kind=LOCKS, id_=name)
            if held is not None and held["expires"] <= now:
                await self.records.delete(kind=LOCKS, id_=name, expect={"owner": held["owner"]})
                continue
            if loop.time() >= deadline:
                raise LockBusy(name)
            attempt += 1
            await asyncio.sleep(random.uniform(0.005, min(0.2, 0.01 * 2 ** min(attempt, 5))))
