"""Feeds each consumer the outbox in event-number order, from its durable cursor.

Each consumer runs under a lease of its own name (``events:<name>``): every worker and
replica starts a runner, one of them holds the lease and delivers, the others wait to take
it over; a holder that dies loses it within ``FHIR_EVENTS_LEASE_SECONDS``. The cursor (a
record of kind ``event-cursors``: the last number done, and when the consumer last ran) is
written under that lease, fenced (``storage/fence.py``): a holder that lost its lease can
neither move the cursor nor write anything else after its successor. A cursor moves only
past events the consumer says are done, so delivery is at least once.

While it holds a consumer's lease, the runner reports how far the consumer is behind
(``fhir_events_consumer_lag_events`` and ``_seconds``, labelled by its name only), at each
look at the outbox: a broker that is down shows as a lag that grows.

The runner also sweeps the outbox: events older than ``FHIR_EVENTS_RETENTION`` that every
active consumer (one whose cursor moved or was seen within the retention) has passed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, timedelta

from fhir_server.core.cancel import cancel_requested
from fhir_server.core.config import Settings
from fhir_server.events.consumer import Consumer
from fhir_server.events.event import Event
from fhir_server.events.topics import topics_of
from fhir_server.observability import metrics
from fhir_server.storage.fence import LeaseLost, LockBusy
from fhir_server.storage.model import ChangeEvent, now_ms
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.events")

CURSORS = "event-cursors"
SEEN_EVERY = 60.0  # seconds between two notes that an idle consumer still runs
SWEEP_EVERY = 600.0  # seconds between two sweeps of the outbox
MAX_PAUSE = 60.0  # seconds, the longest pause after failures in a row
# While events flow, a consumer's cursor is written at most every SAVE_EVERY seconds (a
# write transaction per batch would compete with the clinic's writes), and at once when
# the outbox runs dry; a crash re-delivers at most that much (delivery is at least once).
SAVE_EVERY = 0.5
# Events whose topics this process keeps: every consumer of the process, and every retry
# of a batch, reads the same events; their topics never change (numbers are not reused and
# the history is immutable), so each is worked out once.
TOPICS_KEPT = 4096


def pause_after(failures: int) -> float:
    """Exponential backoff with full jitter: up to 0.5 s after one failure, doubling, at
    most ``MAX_PAUSE``."""
    return random.uniform(0, min(MAX_PAUSE, 0.5 * 2 ** min(failures - 1, 10)))


class Runner:
    def __init__(self, *, repo: Repository, settings: Settings,
                 consumers: Sequence[Consumer]) -> None:
        names = [c.name for c in consumers]
        if len(set(names)) != len(names):
            raise ValueError(f"two consumers share a name: {sorted(names)}")
        self.repo = repo
        self.settings = settings
        self.consumers = list(consumers)
        self.tasks: list[asyncio.Task[None]] = []
        self._nudge = asyncio.Event()
        self._topics: OrderedDict[int, tuple[str, ...]] = OrderedDict()

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._keep(c), name=f"events:{c.name}")
                      for c in self.consumers]
        self.tasks.append(asyncio.create_task(self._sweep(), name="events:retention"))

    def wake(self) -> None:
        """Tell idle consumers of this process to look now (a commit they should see)."""
        self._nudge.set()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with suppress(asyncio.CancelledError):
                await task
        self.tasks = []
        for consumer in self.consumers:
            try:
                await consumer.close()
            except Exception as error:  # stopping goes on for the others
                log.warning("consumer close failed consumer=%s error=%s", consumer.name,
                            type(error).__name__)

    async def _keep(self, consumer: Consumer) -> None:
        """Take the consumer's lease (waiting while another process holds it) and serve it;
        after a failure, pause and take it again."""
        lease = self.settings.fhir_events_lease_seconds
        failures = 0
        while not cancel_requested():  # a stop the database driver swallowed still stops
            try:
                async with self.repo.locks.hold([f"events:{consumer.name}"], wait=lease,
                                                lease=lease):
                    failures = 0
                    try:
                        await self._serve(consumer)
                    finally:
                        await consumer.suspend()
            except LockBusy:
                continue  # another process delivers; take over if it stops
            except LeaseLost:
                log.warning("consumer lease lost consumer=%s", consumer.name)
            except Exception as error:  # the database briefly away: try again
                failures += 1
                log.warning("consumer stopped consumer=%s error=%s", consumer.name,
                            type(error).__name__)
                await asyncio.sleep(pause_after(failures))
            finally:  # another process (or this one, later) reports it
                metrics.consumer_lag(consumer=consumer.name, events=0, seconds=0.0)

    async def _serve(self, consumer: Consumer) -> None:
        after = saved = await self._cursor(consumer)
        await consumer.resume(after)
        seen = time.monotonic()  # when the cursor was last written
        failures = 0
        try:
            while not cancel_requested():
                changes = await self.repo.events(after=after, limit=consumer.batch)
                await self._note_lag(consumer.name, after, changes)
                if not changes:
                    if after != saved or time.monotonic() - seen > SEEN_EVERY:
                        await self._save(consumer.name, after)
                        saved, seen = after, time.monotonic()
                    await self._idle()
                    continue
                events = [await self._event(c) for c in changes]
                try:
                    done = max(0, min(await consumer.deliver(events), len(events)))
                except Exception as error:
                    done = 0
                    log.warning("consumer delivery failed consumer=%s from=%d error=%s",
                                consumer.name, events[0].number, type(error).__name__)
                if done:
                    after = events[done - 1].number
                    if time.monotonic() - seen >= SAVE_EVERY:
                        await self._save(consumer.name, after)
                        saved, seen = after, time.monotonic()
                if done < len(events):
                    failures += 1
                    await asyncio.sleep(pause_after(failures))
                else:
                    failures = 0
        finally:
            if after != saved:  # stopping: what was done is not delivered again
                with suppress(Exception):
                    await self._save(consumer.name, after)

    async def _event(self, change: ChangeEvent) -> Event:
        topics = self._topics.get(change.number)
        if topics is None:
            topics = await topics_of(self.repo, change)
            self._topics[change.number] = topics
            if len(self._topics) > TOPICS_KEPT:
                self._topics.popitem(last=False)
        return Event.of(change, topics)

    async def _note_lag(self, name: str, after: int, waiting: list[ChangeEvent]) -> None:
        if not waiting:
            metrics.consumer_lag(consumer=name, events=0, seconds=0.0)
            return
        at = waiting[0].at if waiting[0].at.tzinfo else waiting[0].at.replace(tzinfo=UTC)
        metrics.consumer_lag(consumer=name, events=await self.repo.last_event() - after,
                             seconds=max(0.0, time.time() - at.timestamp()))

    async def _idle(self) -> None:
        self._nudge.clear()
        with suppress(TimeoutError):
            await asyncio.wait_for(self._nudge.wait(), self.settings.fhir_events_poll_seconds)

    async def _cursor(self, consumer: Consumer) -> int:
        """The consumer's cursor; a new consumer starts at the next event committed, or at
        the oldest the outbox keeps."""
        found = await self.repo.records.get(kind=CURSORS, id_=consumer.name)
        if found is not None:
            return int(found["after"])
        after = await self.repo.last_event() if consumer.start == "now" else 0
        await self.repo.records.insert(kind=CURSORS, doc={"_id": consumer.name, "after": after,
                                                          "seen": time.time()})
        found = await self.repo.records.get(kind=CURSORS, id_=consumer.name)
        return int(found["after"]) if found is not None else after

    async def _save(self, name: str, after: int) -> None:
        await self.repo.records.set_fields(kind=CURSORS, id_=name,
                                           fields={"after": after, "seen": time.time()})

    async def _sweep(self) -> None:
        while not cancel_requested():
            await asyncio.sleep(SWEEP_EVERY)
            try:
                async with self.repo.locks.hold(["events:retention"], wait=0.1):
                    await sweep(self.repo, retention=self.settings.fhir_events_retention)
            except LockBusy:
                pass  # another process sweeps
            except Exception as error:  # next round
                log.warning("outbox sweep failed error=%s", type(error).__name__)


async def sweep(repo: Repository, *, retention: float) -> int:
    """Delete the events older than ``retention`` seconds that every active consumer has
    passed; how many."""
    active_since = time.time() - retention
    cursors = [c for c in await repo.records.all(kind=CURSORS)
               if float(c.get("seen", 0)) >= active_since]
    upto = min((int(c["after"]) for c in cursors), default=await repo.last_event())
    removed = await repo.purge_events(before=now_ms() - timedelta(seconds=retention),
                                      upto=upto)
    if removed:
        log.info("outbox swept events=%d upto=%d", removed, upto)
    return removed
