"""Which process left a pending write, and whether that process still lives.

Without multi-document transactions a write is staged, then committed, then settled
(``repository.py``, ``transactions.py``); a process killed in between leaves it pending.
At the next start it must be rolled back or forward, but with several processes on one
database (workers, replicas) a pending write may also be another live process's, in
flight. So every open repository holds a lease ``process:<id>`` (renewed while it lives,
lapsing ``FHIR_LEASE_SECONDS`` after it dies: ``storage/locks.py``), and every staged write
names its process (``p``). A pending write whose process's lease is gone is settled at
once; one of a process that may live is waited for, at most a lease period.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server.storage.locks import LOCKS, Locks
from fhir_server.storage.model import now_ms
from fhir_server.storage.mongo.versions import STALE_SECONDS
from fhir_server.storage.records import Records

PREFIX = "process:"


class Liveness:
    def __init__(self, records: Records) -> None:
        self.records = records
        self.process = uuid.uuid4().hex  # this repository's, written on its staged writes
        self._release: Callable[[], Awaitable[None]] | None = None

    async def start(self, locks: Locks) -> None:
        self._release = await locks.keep(PREFIX + self.process)

    async def stop(self) -> None:
        if self._release is not None:
            await self._release()
            self._release = None

    async def may_live(self, pending: dict[str, Any], *, created: str) -> bool:
        """Whether the process that staged ``pending`` may still be writing it: its lease is
        held (a process killed a moment ago holds it up to a lease period), or, for a write
        that names no process (staged by an earlier version), it is younger than
        ``STALE_SECONDS``."""
        process = pending.get("p")
        if not process:
            return (now_ms() - pending[created]).total_seconds() < STALE_SECONDS
        if process == self.process:
            return True
        held = await self.records.get(kind=LOCKS, id_=PREFIX + str(process))
        return held is not None and float(held["expires"]) > time.time()
