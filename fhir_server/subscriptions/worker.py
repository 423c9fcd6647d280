"""One Subscription's deliveries: its own queue, in event-number order, one in flight.

The consumer (``consumer.py``) judges each event once and offers it to every worker: the
matching ones join the queue, and every judged number moves ``seen``. The worker sends the
queue's first notification, waits for its answer (``FHIR_SUBSCRIPTION_TIMEOUT``), and on
a failure tries again after a pause that doubles from ``FHIR_SUBSCRIPTION_BACKOFF`` with
full jitter; after ``FHIR_SUBSCRIPTION_MAX_ATTEMPTS`` failed attempts it stops and reports
the reason (the consumer writes the Subscription's ``error``). Its durable cursor
(``state.py``) moves past a notification once delivered, and past what did not match
once the queue is empty; it is written at most every ``SAVE_EVERY`` seconds: a restart
resumes from there, so nothing is lost and a notification may come twice (its event
number tells).

Numbers: a classic Subscription's notification carries the outbox's event number in
``X-FHIR-Event-Number`` (rising with gaps: a receiver's key to tell a repeat). A
topic-based one numbers its events 1, 2, 3… per Subscription (``numbering.py``): the
``notification-event``'s ``event-number``, and ``X-FHIR-Event-Number`` is the last event's
(none on a handshake or a heartbeat); the worker logs which outbox events it numbered
(``NumberLog``) and writes that log before its cursor, so a repeat carries the same
number, also after a restart. Emails number their events the same way (classic: the
outbox's, topic-based: the Subscription's own).

A topic-based Subscription (``backport.py``) is notified with the Backport IG's Bundles
(``notification.py``), POSTed: first a ``handshake`` when it is requested (answered 2xx,
the Subscription becomes ``active``; otherwise ``error``, as the IG says), then up to
``max-count`` events per ``event-notification``, and a ``heartbeat`` whenever nothing was
sent for ``heartbeat-period`` seconds; its ``timeout`` bounds each answer. An email
Subscription (``email_notice.py``) gets one email per notification (topic-based: up to
``max-count`` events), with no handshake and no heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import replace
from itertools import islice

import orjson

from fhir_server.core.cancel import cancel_requested
from fhir_server.core.config import Settings
from fhir_server.observability import metrics
from fhir_server.storage.repository import Repository
from fhir_server.subscriptions.active import Active
from fhir_server.subscriptions.email_notice import message
from fhir_server.subscriptions.notification import Pending, Status, bundle
from fhir_server.subscriptions.notify import DeliveryFailed, Notifier
from fhir_server.subscriptions.numbering import NumberLog
from fhir_server.subscriptions.state import save_cursor, state_of
from fhir_server.subscriptions.traced import traced
from fhir_server.subscriptions.transmits import Audit, Transmits

log = logging.getLogger("fhir_server.subscriptions")
MAX_PAUSE = 300.0
# The durable cursor is written at most this often (a write transaction per notification,
# or per event judged not to match, would compete with the clinic's writes): at once when
# it has not been written for that long, else once that long has passed, and when the
# worker stops. A crash re-sends at most this much (at least once: the event number tells
# a receiver it had it, and a repeat keeps its number).
SAVE_EVERY = 0.5
# A queue longer than this (a receiver slow or away) holds its notifications without the
# versions' JSON, read again when sent, so that a backlog costs little memory.
KEEP_TEXTS = 1000
# While events flow, a topic-based rest-hook Subscription's notifications start at least
# this many seconds apart: what comes meanwhile joins the next one (up to max-count). An
# event after a quiet spell goes at once. Measured with ten Subscriptions on every create at
# saturation: about 7 events per notification without it, 800 notifications a second, whose
# requests (and the receiver's) took a tenth of the machine; it adds at most this much to
# a notification's latency.
SPACING = 0.025
# The signing secret is read again at most this often: a rotated one (``$secret``) signs
# the notifications sent a second later at the latest.
SECRET_FOR = 1.0


def pause(settings: Settings, attempt: int) -> float:
    """Exponential backoff with full jitter after ``attempt`` failed attempts."""
    return random.uniform(0, min(MAX_PAUSE, settings.fhir_subscription_backoff
                                 * 2 ** min(attempt - 1, 16)))


Failed = Callable[["Worker", str], Awaitable[None]]
Activated = Callable[["Worker"], Awaitable[None]]
Send = Callable[[], Awaitable[None]]


class Worker:
    def __init__(self, active: Active, *, after: int, repo: Repository, settings: Settings,
                 notifier: Notifier, failed: Failed, numbers: NumberLog,
                 handshake: bool = False,
                 activated: Activated | None = None, audit: Audit | None = None) -> None:
        self.active = active
        # the transmit AuditEvents (``transmits.py``; ``audit``: AuditTrail.record)
        self.transmits = Transmits(audit, base_url=settings.base_url, subscription=active.id_)
        self.after = after  # durable: delivered, or judged not to match, up to here
        self.seen = after  # judged by the consumer up to here
        # which outbox events were notified, numbered 1… (``numbering.py``)
        self.numbers = numbers
        self.queue: deque[Pending] = deque()
        self.repo, self.settings, self.notifier, self.failed = repo, settings, notifier, failed
        self.handshaking = handshake  # a topic-based Subscription's handshake is due
        self.activated = activated
        self.last_sent = time.monotonic()
        self.saved = (after, numbers.count)  # the cursor as last written
        self.saved_at = time.monotonic()
        self._wake = asyncio.Event()
        self._secret_read: tuple[str, float] | None = None  # the secret and when read
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"subscription:{self.active.id_}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
            self.task = None
            self.transmits.flush(self.active.hook)
            with suppress(Exception):  # the database away: the next start re-sends
                await self._save()

    @property
    def count(self) -> int:
        """How many events have been notified since the Subscription started."""
        return self.numbers.count

    async def _save(self) -> None:
        """Write the cursor (and the count) when it moved since it was last written: the
        number log first, so that the saved count never counts what the log lacks."""
        if (self.after, self.count) != self.saved:
            await self.numbers.save()
            await save_cursor(self.repo.records, self.active.id_, self.after, count=self.count)
            self.saved = (self.after, self.count)
        self.saved_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def offer(self, number: int, pending: Pending | None) -> None:
        """The consumer judged event ``number``: ``pending`` when it matched."""
        if number <= self.seen:
            return
        if pending is not None:
            if len(self.queue) >= KEEP_TEXTS and pending.text is not None:
                pending = replace(pending, text=None)
            self.queue.append(pending)
        self.seen = number
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while not cancel_requested():  # the driver may swallow a stop whole
            try:
                if self.handshaking and not await self._handshake():
                    return
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

    async def _handshake(self) -> bool:
        """One handshake; False (the Subscription reported failed) when it is refused."""
        try:
            await self._post("handshake", [])
        except DeliveryFailed as failure:
            metrics.notification("failed", self.active.hook.type_)
            await self.failed(self, f"The handshake failed: {failure.reason}")
            return False
        metrics.notification("delivered", self.active.hook.type_)
        if self.activated is not None:
            await self.activated(self)
        self.handshaking = False
        return True

    async def _step(self) -> bool:
        """Deliver the first queued notification(s), or note progress and wait (sending a
        heartbeat when one is due); False once the Subscription failed."""
        if not self.queue:
            if self.seen > self.after:
                self.after = self.seen
            self._wake.clear()
            if not self.queue and self.seen <= self.after:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_for())
            if self._save_in() == 0:  # due now, or came due while waiting (_idle_for)
                await self._save()
            if self.transmits.due_in() == 0:
                self.transmits.flush(self.active.hook)
            if not self.queue and self._heartbeat_in() == 0:
                return await self._deliver("heartbeat", [])
            return True
        topic = self.active.topic
        if topic is not None and self.active.hook.type_ == "rest-hook":
            wait = SPACING - (time.monotonic() - self.last_sent)
            if wait > 0 and len(self.queue) < topic.max_count:
                await asyncio.sleep(wait)
        batch = list(islice(self.queue, topic.max_count if topic else 1))
        if not await self._deliver("event-notification", batch):
            return False
        for _ in batch:
            self.queue.popleft()
        self.numbers.notified([item.number for item in batch])
        self.after = batch[-1].number
        if self._save_in() == 0:
            await self._save()
        return True

    def _save_in(self) -> float | None:
        """Seconds until the cursor is to be written (None: it has not moved)."""
        if (self.after, self.count) == self.saved:
            return None
        return max(0.0, SAVE_EVERY - (time.monotonic() - self.saved_at))

    def _idle_for(self) -> float | None:
        """How long to wait for an event: until a heartbeat, the cursor's write or the
        grouped transmit AuditEvents are due (None: until an event comes)."""
        due = [t for t in (self._heartbeat_in(), self._save_in(), self.transmits.due_in())
               if t is not None]
        return min(due) if due else None

    def _heartbeat_in(self) -> float | None:
        """Seconds until a heartbeat is due (None: no heartbeats)."""
        topic = self.active.topic
        if topic is None or topic.heartbeat is None or self.active.hook.type_ != "rest-hook":
            return None
        return max(0.0, topic.heartbeat - (time.monotonic() - self.last_sent))

    async def _deliver(self, kind: str, batch: list[Pending]) -> bool:
        if self.active.hook.type_ == "email":
            reason = await self._attempts(batch, lambda: self._mail(batch))
        elif self.active.topic is None:
            reason = await self._attempts(batch[:1], lambda: self._send(batch[0]))
        else:
            reason = await self._attempts(batch,
                                          lambda: self._post(kind, batch))
        if reason is not None:
            metrics.notification("gave_up", self.active.hook.type_)
            await self.failed(self, reason)
            return False
        return True

    async def _attempts(self, batch: list[Pending], send: Send) -> str | None:
        """Send until delivered (None) or the attempts are spent (the last reason); each
        attempt is audited."""
        number = batch[-1].number if batch else None
        attempts = self.settings.fhir_subscription_max_attempts
        reason = ""
        what = "a heartbeat" if number is None else f"event {number}"
        for attempt in range(1, attempts + 1):
            try:
                await traced(self.active, batch, send)  # a span per attempt, when tracing
                metrics.notification("delivered", self.active.hook.type_)
                self._audited(batch, delivered=True, attempt=attempt)
                return None
            except DeliveryFailed as failure:
                reason = failure.reason
                metrics.notification("failed", self.active.hook.type_)
                self._audited(batch, delivered=False, attempt=attempt)
                log.info("notification failed subscription=%s event=%s attempt=%d reason=%s",
                         self.active.id_, number, attempt, reason)
            if attempt == 1 and self._save_in() is not None:
                await self._save()  # the receiver is failing: the progress before it, now
            if attempt < attempts:
                await asyncio.sleep(pause(self.settings, attempt))
        return f"The notification of {what} failed {attempts} times; last: {reason}"

    def _audited(self, batch: list[Pending], *, delivered: bool, attempt: int) -> None:
        self.transmits.attempted(self.active.hook, [f"{item.type_}/{item.id_}"
                                                    for item in batch],
                                 delivered=delivered, attempt=attempt)

    async def _secret(self) -> str:
        read = self._secret_read
        if read is None or time.monotonic() - read[1] >= SECRET_FOR:
            secret = str((await state_of(self.repo.records, self.active.id_))["secret"])
            read = self._secret_read = (secret, time.monotonic())
        return read[0]

    async def _text(self, item: Pending) -> str | None:
        """The JSON of the version the event wrote (None: no longer kept)."""
        if item.text is not None:
            return item.text
        stored = await self.repo.version(type_=item.type_, id_=item.id_, version=item.version)
        return None if stored is None else stored.text

    async def _send(self, item: Pending) -> None:
        body = None
        if self.active.hook.payload is not None:
            text = await self._text(item)
            body = None if text is None else text.encode()
        await self.notifier.send(self.active.hook, secret=await self._secret(),
                                 number=item.number, type_=item.type_, id_=item.id_, body=body)

    async def _mail(self, batch: list[Pending]) -> None:
        topic = self.active.topic
        watching = (f"topic {topic.topic.canonical}" if topic is not None
                    else f"criteria {self.active.watch.criteria[0].text}")
        numbers = [item.number for item in batch] if topic is None else self._numbers(batch)
        await self.notifier.mail(message(self.settings, id_=self.active.id_,
                                         to=self.active.hook.endpoint, watching=watching,
                                         items=batch, numbers=numbers))

    def _numbers(self, batch: list[Pending]) -> list[int]:
        """The batch's event numbers in this Subscription: the next after the ones notified
        (``numbering.py``)."""
        return list(range(self.count + 1, self.count + len(batch) + 1))

    async def _post(self, kind: str, batch: list[Pending]) -> None:
        topic = self.active.topic
        assert topic is not None
        bodies: list[orjson.Fragment | None] = []
        for item in batch:
            text = await self._text(item) if topic.content == "full-resource" else None
            bodies.append(None if text is None else orjson.Fragment(text))
        numbers = self._numbers(batch)
        status = Status(id_=self.active.id_, topic=topic.topic.canonical,
                        status="requested" if self.handshaking else "active",
                        since_start=self.count + len(batch))
        payload = bundle(self.settings.base_url, status, kind, batch, bodies,
                         numbers=numbers, content=topic.content)
        await self.notifier.post(self.active.hook, secret=await self._secret(),
                                 body=orjson.dumps(payload),
                                 number=numbers[-1] if numbers else None,
                                 timeout=topic.timeout)
        self.last_sent = time.monotonic()
