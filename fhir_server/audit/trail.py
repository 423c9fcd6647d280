"""The AuditEvent writer: an in-process queue flushed in batches, off the request path.

A request only appends its event to a list (no database round trip); a
background task writes the queue as AuditEvent resources through the
repository every ``FHIR_AUDIT_FLUSH_SECONDS`` or as soon as
``FHIR_AUDIT_BATCH`` events wait, and the lifespan flushes what is left at
shutdown. Events that cannot be written (database unavailable) stay queued
and are retried; beyond ``FHIR_AUDIT_QUEUE_MAX`` the oldest are dropped and
the loss is logged (the count, never the content).

With ``FHIR_AUDIT_JOURNAL`` (the default) every queued event is also appended to
a local journal under ``FHIR_DATA_DIR`` (``audit/journal.py``), so events queued
when the process is killed are written at the next start instead of being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from fhir_server.audit.events import login_event
from fhir_server.audit.index import AuditIndexer
from fhir_server.audit.journal import Journal
from fhir_server.auth.tokens import LoginEvent
from fhir_server.core.config import Settings
from fhir_server.observability import metrics
from fhir_server.service.interactions import stamp
from fhir_server.storage.model import instant, now_ms
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.audit")
AUDIT_TYPE = "AuditEvent"
WRITE_CHUNK = 500  # events per database write
STOP_WAIT = 30.0  # seconds stop() waits for the writer's current flush


class AuditTrail:
    """``app.state.audit``: ``record(event)`` from requests, batched writes behind."""

    def __init__(self, *, repo: Repository, settings: Settings,
                 journal: Journal | None = None) -> None:
        self.repo = repo
        self.settings = settings
        self.journal = journal
        self._queue: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()
        self._indexer = AuditIndexer(settings.base_url)
        self.written = 0
        self.dropped = 0

    def record(self, event: dict[str, Any]) -> None:
        """Queue one AuditEvent (a dict); never blocks, never touches the database."""
        event = {**event, "id": str(uuid.uuid4())}
        self._queue.append(event)
        if self.journal is not None:
            try:
                self.journal.append(event)
            except OSError as exc:
                log.error("audit journal write failed error=%s; journal off", type(exc).__name__)
                self.journal = None
        overflow = len(self._queue) - self.settings.fhir_audit_queue_max
        if overflow > 0:
            del self._queue[:overflow]
            self.dropped += overflow
            metrics.AUDIT_DROPPED.inc(overflow)
            log.error("audit queue full dropped=%d", overflow)
        if len(self._queue) >= self.settings.fhir_audit_batch:
            self._wake.set()

    async def on_login(self, event: LoginEvent) -> None:
        """The authorization server's login hook (``AuthService.on_login``)."""
        self.record(login_event(
            success=event.success, recorded=instant(now_ms()), base_url=self.settings.base_url,
            client_id=event.client_id, username=event.username, role=event.role,
            kind=event.kind, reason=event.reason, address=event.source))

    async def start(self) -> None:
        if self.journal is not None:
            try:
                self.journal.open()
                self._queue[:0] = self.journal.orphans()  # a killed process's events
            except OSError as exc:
                log.error("audit journal unavailable error=%s; events are kept in memory only",
                          type(exc).__name__)
                self.journal = None
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Stop the writer and flush every queued event. The writer is asked to stop (it
        ends its current flush first) rather than cancelled: a cancel that reaches a
        database call can come back as the driver's own error, which the writer survives."""
        task = self._task
        if task is not None:
            self._stopping = True
            self._wake.set()
            done, _ = await asyncio.wait([task], timeout=STOP_WAIT)
            if not done:  # a flush stuck on an unreachable database
                task.cancel()
                await asyncio.wait([task], timeout=STOP_WAIT)
            self._task = None
        try:
            await self.flush()
        finally:
            if self.journal is not None:
                self.journal.close(keep=bool(self._queue))
            self.report()

    async def _run(self) -> None:
        while not self._stopping:
            # Not asyncio.wait_for: on Python 3.11 it runs the wait as a task of its own, and
            # a cancel that meets its timeout can leave the writer waiting forever at shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.fhir_audit_flush_seconds):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return  # stop() flushes what is left
            try:
                await self.flush()
            except Exception as exc:  # keep the writer alive; the events stay queued
                log.error("audit flush failed error=%s queued=%d", type(exc).__name__,
                          len(self._queue))
            self.report()

    def report(self) -> None:
        """The queue depth and journal size gauges (refreshed by the writer, not per event)."""
        metrics.audit_state(queued=len(self._queue),
                            journal_bytes=self.journal.size() if self.journal else 0)

    async def flush(self) -> int:
        """Write every queued event now; returns how many were written."""
        async with self._lock:
            batch, self._queue = self._queue, []
            if self.journal is not None:
                self.journal.rotate()  # what comes next goes to a new segment
            done = 0
            try:
                for start in range(0, len(batch), WRITE_CHUNK):
                    await self._write(batch[start:start + WRITE_CHUNK])
                    done = min(len(batch), start + WRITE_CHUNK)
            finally:
                if done < len(batch):  # put back what was not written, in order
                    self._queue[:0] = batch[done:]
                elif self.journal is not None:
                    self.journal.done()  # every rotated segment is in the database now
            self.written += done
            metrics.AUDIT_WRITTEN.inc(done)
            return done

    async def restore(self, events: list[dict[str, Any]]) -> int:
        """Write AuditEvents exported from another server, keeping their ids (one already
        here is skipped); returns how many were given."""
        for start in range(0, len(events), WRITE_CHUNK):
            await self._write(events[start:start + WRITE_CHUNK])
        return len(events)

    async def _write(self, events: list[dict[str, Any]]) -> None:
        """One batch, in as few database round trips as the engine allows. The events are
        the server's own (``audit/events.py``, whose output the tests validate with the R4
        model), immutable, and never versioned: no per-event validation or version check."""
        ts = now_ms()
        items = []
        for event in events:
            id_ = str(event.get("id") or uuid.uuid4())
            resource = {**event, "resourceType": AUDIT_TYPE, "id": id_}
            items.append((id_, stamp(resource, id_=id_, version=1, ts=ts),
                          self._indexer.index(resource)))
        await self.repo.append_new(type_=AUDIT_TYPE, items=items, ts=ts)
