"""A consumer that acts on its events one at a time, retrying each while it fails.

Each event ``wants`` is handed to ``handle``, up to ``tries`` times with backoff
(``runner.pause_after``) while it raises (a step's own failures are on its Task: what
raises here is a fault that passes by itself, such as the database briefly away or a
lease held by another process); still failing, the batch stops at that event and the
runner hands it again after a pause. The log names the event's number and the error's
kind only.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from fhir_server.core.fhirjson import loads_stored
from fhir_server.events.consumer import Consumer
from fhir_server.events.event import Event
from fhir_server.events.runner import pause_after
from fhir_server.storage.repository import Repository


async def current_content(repo: Repository, event: Event) -> dict[str, Any] | None:
    """The content of the version ``event`` is about while it is still the current one
    (None: a later version, or a deletion, has its own event to come)."""
    stored = await repo.current(type_=event.type_, id_=event.id_)
    if stored is None or stored.version != event.version or stored.text is None:
        return None
    content: dict[str, Any] = loads_stored(stored.text)
    return content


class EachEventConsumer(Consumer):
    tries: int = 3
    log: logging.Logger

    def wants(self, event: Event) -> bool:
        """Whether ``handle`` has anything to do with ``event`` (decided without I/O)."""
        return True

    @abstractmethod
    async def handle(self, event: Event) -> None:
        """Act on one event; raising tries it again."""

    async def deliver(self, events: Sequence[Event]) -> int:
        for done, event in enumerate(events):
            if not self.wants(event):
                continue
            for attempt in range(1, self.tries + 1):
                try:
                    await self.handle(event)
                    break
                except Exception as error:
                    if attempt == self.tries:  # still failing: handed again later
                        self.log.warning("%s deferred event=%d error=%s", self.name,
                                         event.number, type(error).__name__)
                        return done
                    self.log.info("%s retry event=%d attempt=%d error=%s", self.name,
                                  event.number, attempt, type(error).__name__)
                    await asyncio.sleep(pause_after(attempt))
        return len(events)
