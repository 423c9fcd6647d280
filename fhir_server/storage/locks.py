"""Named leases shared by every server process on one database.

A write rule that must check-then-write (no two overlapping bookings of one
practitioner) holds a lease on each name it depends on while it checks and
writes. A lease is a record ``{_id: name, owner, expires}`` of kind ``locks``:
inserting it is the atomic "take" (every engine refuses a duplicate ``_id``);
releasing deletes it only if this holder still owns it.

A live holder renews its leases in the background (every third of the lease), so
its work may take as long as it needs; a holder that dies (or stops: a paused or
starved process) stops renewing, and its leases lapse a lease period later at
most (``FHIR_LEASE_SECONDS``, 15 s by default), to be taken over by the next caller.
The writes made inside ``hold`` are fenced (``storage/fence.py``): they commit only while
the lease is still this holder's, so a holder that lost its lease cannot write after its
successor.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

from fhir_server.core.cancel import cancel_requested
from fhir_server.storage.fence import LOCKS, Fence, LeaseLost, LockBusy, holding, unfenced

if TYPE_CHECKING:
    from fhir_server.storage.records import Records

__all__ = ["LEASE_SECONDS", "LOCKS", "LeaseLost", "LockBusy", "Locks"]

log = logging.getLogger("fhir_server.storage")

LEASE_SECONDS = 15.0  # how long a dead holder's lease outlives it, at most (FHIR_LEASE_SECONDS)
RENEWALS_PER_LEASE = 3  # a live holder renews every third of its lease


class Locks:
    def __init__(self, records: Records, *, lease: float = LEASE_SECONDS) -> None:
        self.records = records
        self.lease = lease

    @asynccontextmanager
    async def hold(self, names: Iterable[str], *, wait: float = 10.0,
                   lease: float | None = None) -> AsyncIterator[None]:
        """Hold every name (taken in sorted order, so two holders cannot deadlock) for as
        long as the ``async with`` lasts; a holder that dies leaves them for ``lease``
        seconds at most (the configured lease by default). ``LockBusy`` when a name stays
        taken for ``wait`` seconds."""
        lease = lease or self.lease
        owner = uuid.uuid4().hex
        taken: list[str] = []
        deadline = asyncio.get_running_loop().time() + wait
        renewer: asyncio.Task[None] | None = None
        try:
            with unfenced():
                for name in sorted(set(names)):
                    await self._take(name, owner, deadline, lease)
                    taken.append(name)
                renewer = asyncio.create_task(self._renew(list(taken), owner, lease))
            with holding(Fence(name, owner, lease) for name in taken):
                yield
        finally:
            await self._release(reversed(taken), owner, renewer)

    async def keep(self, name: str) -> Callable[[], Awaitable[None]]:
        """Take ``name`` (a name no one else takes: a process's own) until the returned
        release is awaited, renewed meanwhile; it fences nothing."""
        owner = uuid.uuid4().hex
        with unfenced():
            await self._take(name, owner, asyncio.get_running_loop().time(), self.lease)
            renewer = asyncio.create_task(self._renew([name], owner, self.lease))

        async def release() -> None:
            await self._release([name], owner, renewer)

        return release

    async def _release(self, names: Iterable[str], owner: str,
                       renewer: asyncio.Task[None] | None) -> None:
        """Stop renewing, then delete each lease that is still this holder's."""
        if renewer is not None:
            renewer.cancel()
            with suppress(asyncio.CancelledError):
                await renewer
        with unfenced():
            for name in names:
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
                # Only the lapsed lease as read: a holder that renewed meanwhile keeps it.
                await self.records.delete(kind=LOCKS, id_=name, expect={
                    "owner": held["owner"], "expires": held["expires"]})
                continue
            if loop.time() >= deadline:
                raise LockBusy(name)
            attempt += 1
            await asyncio.sleep(random.uniform(0.005, min(0.2, 0.01 * 2 ** min(attempt, 5))))

    async def _renew(self, names: list[str], owner: str, lease: float) -> None:
        """Push each lease's expiry forward while its holder lives; stop on a lease that was
        taken over (the holder's fenced writes then fail with ``LeaseLost``)."""
        with unfenced():
            while names:
                await asyncio.sleep(lease / RENEWALS_PER_LEASE)
                for name in list(names):
                    try:
                        renewed = await self.records.set_fields(
                            kind=LOCKS, id_=name, fields={"expires": time.time() + lease},
                            expect={"owner": owner})
                    except Exception as error:  # the database is briefly away: next beat
                        if cancel_requested():
                            return
                        log.warning("lease renewal failed lease=%s error=%s", name,
                                    type(error).__name__)
                        continue
                    if cancel_requested():  # the driver may swallow a cancel whole
                        return
                    if not renewed:
                        log.warning("lease lost lease=%s", name)
                        names.remove(name)
