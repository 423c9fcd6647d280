"""The notifications consumer: tells the patient of each step of the journey, from the
outbox, and reminds them of their appointments.

A consumer of change events (``events/consumer.py``, named ``notifications``: one process
at a time, from a durable cursor, at least once). For each event of a journey topic the
patient is told of (``messages.EVENT_KINDS``) it sends the notice (``delivery.py``: once
per event and channel). While it holds its lease it also scans for appointments due a
reminder (``reminders.py``). For each notify-patient worklist Task set to ``requested``
(whoever works the worklist, once the channel or the address is fixed) it sends the
message again (``Delivery.resend``). It starts at the next event committed: a first start
does not tell patients of the past.

A fault of the database stops the batch at that event: the runner hands it again after a
pause, and what was sent already is not sent again. A channel's failures are the
delivery's (attempts, then a ``not-done`` Communication and a worklist Task): they never
hold the cursor back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress
from typing import Literal

from fhir_server.core.config import Settings
from fhir_server.events.consumer import Consumer
from fhir_server.events.event import Event
from fhir_server.notifications.channels import Channel, channels
from fhir_server.notifications.delivery import Delivery
from fhir_server.notifications.messages import EVENT_KINDS, event_notice
from fhir_server.notifications.reminders import remind
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.notifications")


class NotificationsConsumer(Consumer):
    name = "notifications"
    batch = 20
    start: Literal["now", "beginning"] = "now"

    def __init__(self, *, repo: Repository, settings: Settings,
                 channels: list[Channel]) -> None:
        self.repo, self.settings, self.channels = repo, settings, channels
        self.delivery = Delivery(repo=repo, settings=settings, channels=channels)
        self._reminders: asyncio.Task[None] | None = None

    async def deliver(self, events: Sequence[Event]) -> int:
        for done, event in enumerate(events):
            task = event.type_ == "Task" and event.action != "delete"
            if not task and not any(topic in EVENT_KINDS for topic in event.topics):
                continue
            try:
                if task:  # a notify-patient Task set to requested: sent again
                    await self.delivery.resend(event.id_, event.version)
                    continue
                notice = await event_notice(self.repo, self.settings, event)
                if notice is not None:
                    await self.delivery.notify(notice)
            except Exception as error:  # the database away: handed again later
                log.warning("notification deferred event=%d error=%s", event.number,
                            type(error).__name__)
                return done
        return len(events)

    async def resume(self, after: int) -> None:
        self._reminders = asyncio.create_task(self._remind(), name="notifications:reminders")

    async def suspend(self) -> None:
        task, self._reminders = self._reminders, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        await self.suspend()
        for channel in self.channels:
            await channel.close()

    async def _remind(self) -> None:
        while True:
            try:
                await remind(repo=self.repo, settings=self.settings, delivery=self.delivery)
            except Exception as error:  # next scan
                log.warning("reminder scan failed error=%s", type(error).__name__)
            await asyncio.sleep(self.settings.fhir_reminder_scan_seconds)


def workers(*, settings: Settings, repo: Repository) -> list[Consumer]:
    """The notifications consumer, when a channel is on (``main.py`` hands it to the event
    runner)."""
    on = channels(settings)
    return [NotificationsConsumer(repo=repo, settings=settings, channels=on)] if on else []
