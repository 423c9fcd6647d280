"""The one consumer of the outbox that notifies Subscriptions (``subscriptions``).

It reads each event once (``events/runner.py``: under its lease, in one process at a
time) and judges it for every active Subscription (``judge.py``); each Subscription's
worker (``worker.py``) delivers what matched, in event-number order, one in flight.

Progress: the consumer's own cursor moves past a batch as soon as it is judged and handed
out, so one slow receiver never holds the others. What a Subscription has not got yet is
kept by its own durable cursor (``state.py``, a cursor record the outbox sweep respects):
when this process takes the lease (a start, a restart, a takeover) every active
Subscription whose cursor is behind the consumer's catches up from the outbox first
(the events between are judged again for it), so a restart loses nothing.

A Subscription's own changes come through the outbox too: a ``requested`` one is taken on
(status ``active``, written by the server) and its notifications start after the event
that requested it, or resume from its cursor (one set back to ``requested`` after an
``error`` gets what it missed while the outbox keeps it); ``off`` stops it and frees its
cursor; ``error`` stops it and keeps its cursor (``$events`` serves what it missed); a
deletion forgets it (with the log of its event numbers, ``numbering.py``, whose expired
blocks the consumer sweeps every ``SWEEP_EVERY``). Only the current version of a
Subscription is acted on. A websocket Subscription is only activated here: every process
pings the sockets bound to it (``sockets.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import orjson

from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.events.consumer import Consumer
from fhir_server.events.event import Event
from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.parse import criteria_of
from fhir_server.storage.model import StoredVersion
from fhir_server.storage.repository import Repository
from fhir_server.subscriptions.active import read_active
from fhir_server.subscriptions.judge import Judge
from fhir_server.subscriptions.notify import Notifier
from fhir_server.subscriptions.numbering import NumberLog, sweep_numbers
from fhir_server.subscriptions.state import cursor, forget, notified, save_cursor
from fhir_server.subscriptions.status import set_status
from fhir_server.subscriptions.transmits import Audit
from fhir_server.subscriptions.worker import Worker

log = logging.getLogger("fhir_server.subscriptions")
CATCH_UP_PAGE = 500
MAX_SUBSCRIPTIONS = 10_000
SWEEP_EVERY = 600.0  # seconds between two sweeps of expired event-number logs


class SubscriptionsConsumer(Consumer):
    name = "subscriptions"

    def __init__(self, *, repo: Repository, settings: Settings,
                 audit: Audit | None = None) -> None:
        self.repo, self.settings = repo, settings
        self.audit = audit  # AuditTrail.record: a transmit AuditEvent per notification
        self.notifier: Notifier | None = None
        self.workers: dict[str, Worker] = {}
        # The version of each Subscription last acted on: its own event, read after
        # ``resume`` already took that version, must not start it again (a handshake that
        # failed at once would be sent twice).
        self.taken: dict[str, int] = {}
        self.swept = -SWEEP_EVERY  # when the event-number logs were last swept (monotonic)

    async def resume(self, after: int) -> None:
        self.notifier = Notifier(self.settings)
        query = compile_criteria(CompileContext(base_url=self.settings.base_url),
                                 "Subscription",
                                 criteria_of([("status", "requested,active")]), record=False)
        ids = await self.repo.search(type_="Subscription", query=query, sort=(),
                                     limit=MAX_SUBSCRIPTIONS)
        for stored in await self.repo.fetch(type_="Subscription", ids=ids):
            await self._take(stored, number=after)

    async def suspend(self) -> None:
        for worker in self.workers.values():
            await worker.stop()
        self.workers.clear()
        self.taken.clear()
        if self.notifier is not None:
            await self.notifier.close()
            self.notifier = None

    async def close(self) -> None:
        await self.suspend()

    async def deliver(self, events: Sequence[Event]) -> int:
        if time.monotonic() - self.swept >= SWEEP_EVERY:
            await sweep_numbers(self.repo.records)  # the blocks whose events are gone
            self.swept = time.monotonic()
        judge = Judge(self.repo, self.settings)
        for event in events:
            if event.type_ == "Subscription":
                await self._changed(event)
            for worker in list(self.workers.values()):
                if worker.running:
                    worker.offer(event.number, await judge.pending(worker.active, event))
        return len(events)

    async def _changed(self, event: Event) -> None:
        current = await self.repo.current(type_="Subscription", id_=event.id_)
        if current is None or current.version != event.version:
            return  # not the current version: the event of the current one comes later
        if self.taken.get(event.id_) == current.version:
            return  # taken already (``resume`` read it before its event came)
        if current.text is None:
            self.taken.pop(event.id_, None)
            await self._stop(event.id_)
            await forget(self.repo.records, event.id_, secret=True)
            return
        await self._take(current, number=event.number)

    async def _take(self, stored: StoredVersion, *, number: int) -> None:
        """Act on a Subscription's current version; ``number``: the event up to which the
        consumer has judged everything."""
        id_ = stored.id_
        self.taken[id_] = stored.version
        resource = orjson.loads(stored.text or "{}")
        status = resource.get("status")
        if status not in ("requested", "active"):
            await self._stop(id_)
            if status == "off":
                await forget(self.repo.records, id_, secret=False)
            return
        try:
            active = await read_active(self.repo.records, self.settings, id_=id_,
                                       resource=resource)
        except FhirError as error:  # a setting changed since it was written
            await self._stop(id_)
            await set_status(self.repo, self.settings, id_=id_, version=stored.version,
                             was=str(status), status="error", error=error.diagnostics)
            return
        # A topic-based rest-hook Subscription requested is activated by its handshake.
        handshake = (status == "requested" and active.topic is not None
                     and active.hook.type_ == "rest-hook")
        if status == "requested" and not handshake and not await set_status(
                self.repo, self.settings, id_=id_, version=stored.version, was="requested",
                status="active"):
            return  # changed meanwhile: its own event comes
        if active.hook.type_ == "websocket":  # each process pings its sockets (sockets.py)
            await self._stop(id_)
            await forget(self.repo.records, id_, secret=False)
            return
        worker = self.workers.get(id_)
        if worker is not None and worker.running:
            if not handshake or worker.handshaking:
                worker.active = active
                return
            await self._stop(id_)  # requested again: a new handshake, from its cursor
        start = await cursor(self.repo.records, id_)
        if start is None:
            start = number
            await save_cursor(self.repo.records, id_, start)
        assert self.notifier is not None
        numbers = await NumberLog.load(self.repo.records, id_,
                                       count=await notified(self.repo.records, id_),
                                       retention=self.settings.fhir_events_retention)
        worker = Worker(active, after=start, repo=self.repo, settings=self.settings,
                        notifier=self.notifier, failed=self._failed, handshake=handshake,
                        activated=self._activated, audit=self.audit, numbers=numbers)
        self.workers[id_] = worker
        await self._catch_up(worker, upto=number)
        worker.start()

    async def _catch_up(self, worker: Worker, *, upto: int) -> None:
        """Judge again, for this worker only, the events it has not seen up to ``upto``."""
        judge = Judge(self.repo, self.settings)
        while worker.seen < upto:
            changes = await self.repo.events(after=worker.seen, limit=CATCH_UP_PAGE)
            if not changes:
                return
            for change in changes:
                if change.number > upto:
                    return
                worker.offer(change.number, await judge.pending(worker.active, change))

    async def _stop(self, id_: str) -> None:
        worker = self.workers.pop(id_, None)
        if worker is not None:
            await worker.stop()

    async def _failed(self, worker: Worker, reason: str) -> None:
        """A notification (or a handshake) could not be delivered: the Subscription goes
        to ``error``."""
        id_ = worker.active.id_
        if self.workers.get(id_) is worker:
            del self.workers[id_]
        log.warning("subscription failed subscription=%s after=%d", id_, worker.after)
        await self._set(id_, was=("active", "requested"), status="error", error=reason)

    async def _activated(self, worker: Worker) -> None:
        """A topic-based Subscription's handshake was answered: it becomes ``active``."""
        await self._set(worker.active.id_, was=("requested",), status="active")

    async def _set(self, id_: str, *, was: tuple[str, ...], status: str,
                   error: str | None = None) -> None:
        current = await self.repo.current(type_="Subscription", id_=id_)
        if current is None or current.text is None:
            return
        now = orjson.loads(current.text).get("status")
        if now in was:
            await set_status(self.repo, self.settings, id_=id_, version=current.version,
                             was=now, status=status, error=error)
