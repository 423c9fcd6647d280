"""One Subscription's deliveries: its own queue, in event-number order, one in flight.

The consumer (``consumer.py``) judges each event once and offers it to every worker: the
matching ones join the queue, and every judged number moves ``seen``. The worker sends the
queue's first notification, waits for its answer (``FHIR_SUBSCRIPTION_TIMEOUT``), and on
a failure tries again after a pause that doubles from ``FHIR_SUBSCRIPTION_BACKOFF`` with
full jitter; after ``FHIR_SUBSCRIPTION_MAX_ATTEMPTS`` failed attempts it stops and reports
the reason (the consumer writes the Subscription's ``error``). Its durable cursor
(``state.py``) moves past a notification once delivered, and past what did not match
once the queue is empty: a restart resumes from there, so nothing is lost and a
notification may come twice (its event number tells).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

from fhir_server.core.config import Settings
from fhir_server.observability import metrics
from fhir_server.storage.repository import Repository
from fhir_server.subscriptions.active import Active
from fhir_server.subscriptions.notify import DeliveryFailed, Notifier
from fhir_server.subscriptions.state import save_cursor, state_of

log = logging.getLogger("fhir_server.subscriptions")
MAX_PAUSE = 300.0


@dataclass(frozen=True)
class Pending:
    """A change to notify: its event number and the version it wrote."""

    number: int
    type_: str
    id_: str
    version: int


def pause(settings: Settings, attempt: int) -> float:
    """Exponential backoff with full jitter after ``attempt`` failed attempts."""
    return random.uniform(0, min(MAX_PAUSE, settings.fhir_subscription_backoff
                                 * 2 ** min(attempt - 1, 16)))


Failed = Callable[["Worker", Pending, str], Awaitable[None]]


class Worker:
    def __init__(self, active: Active, *, after: int, repo: Repository, settings: Settings,
                 notifier: Notifier, failed: Failed) -> None:
        self.active = active
        self.after = after  # durable: delivered, or judged not to match, up to here
        self.seen = after  # judged by the consumer up to here
        self.queue: deque[Pending] = deque()
        self.repo, self.settings, self.notifier, self.failed = repo, settings, notifier, failed
        self._wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"subscription:{self.active.id_}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def offer(self, number: int, pending: Pending | None) -> None:
        """The consumer judged event ``number``: ``pending`` when it matched."""
        if number <= self.seen:
            return
        if pending is not None:
            self.queue.append(pending)
        self.seen = number
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                if not await self._step():
                    return
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database briefly away: try again
                failures += 1
                log.warning("subscription worker failed subscription=%s error=%s",
                            self.active.id_, type(error).__name__)
                await asyncio.sleep(pause(self.settings, failures))

    async def _step(self) -> bool:
        """Deliver the first queued notification, or note progress and wait; False once the
        Subscription failed."""
        if not self.queue:
            if self.seen > self.after:
                await save_cursor(self.repo.records, self.active.id_, self.seen)
                self.after = self.seen
            self._wake.clear()
            if not self.queue and self.seen <= self.after:
                await self._wake.wait()
            return True
        item = self.queue[0]
        reason = await self._attempts(item)
        if reason is not None:
            metrics.notification("gave_up")
            await self.failed(self, item, reason)
            return False
        self.queue.popleft()
        self.after = item.number
        await save_cursor(self.repo.records, self.active.id_, item.number)
        return True

    async def _attempts(self, item: Pending) -> str | None:
        """Send until delivered (None) or the attempts are spent (the last reason)."""
        attempts = self.settings.fhir_subscription_max_attempts
        reason = ""
        for attempt in range(1, attempts + 1):
            try:
                await self._send(item)
                metrics.notification("delivered")
                return None
            except DeliveryFailed as failure:
                reason = failure.reason
                metrics.notification("failed")
                log.info("notification failed subscription=%s event=%d attempt=%d reason=%s",
                         self.active.id_, item.number, attempt, reason)
            if attempt < attempts:
                await asyncio.sleep(pause(self.settings, attempt))
        return (f"The notification of event {item.number} failed {attempts} times; last: "
                f"{reason}")

    async def _send(self, item: Pending) -> None:
        body = None
        if self.active.hook.payload is not None:
            stored = await self.repo.version(type_=item.type_, id_=item.id_,
                                             version=item.version)
            body = None if stored is None or stored.text is None else stored.text.encode()
        secret = str((await state_of(self.repo.records, self.active.id_))["secret"])
        await self.notifier.send(self.active.hook, secret=secret, number=item.number,
                                 type_=item.type_, id_=item.id_, body=body)
