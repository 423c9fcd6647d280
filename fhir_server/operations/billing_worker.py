"""The billing worker: bills each visit after it finishes, from the outbox.

A consumer of change events (``events/consumer.py``, named ``billing``: one process at a
time, from a durable cursor, at least once). For each ``encounter-finished`` event it runs
the bill-visit step (``bill_visit.py``); for each bill-visit Task set to ``requested`` (by
whoever works the worklist) it runs the step again for the Task's Encounter. The clinical
write that finished the visit has committed already: billing never refuses it, and what
billing cannot do becomes a Task on the worklist.

It starts from the oldest event the outbox keeps, so a visit finished before the worker
first ran is billed too. Events handed twice, or a bill made meanwhile by
``$generate-bill`` or by another worker, bill nothing more (``bill_visit.py``). A
transient fault (the database briefly away, a bill being written by another process) is
tried again here with backoff, ``TRIES`` times, then the event is handed back to the
runner, which hands it again after a pause: it never makes a Task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

from fhir_server.core.config import Settings
from fhir_server.core.fhirjson import loads_stored
from fhir_server.events.consumer import Consumer
from fhir_server.events.event import Event
from fhir_server.events.runner import pause_after
from fhir_server.operations.bill_visit import STEP, bill_visit
from fhir_server.revenue.records import LOCAL_REF
from fhir_server.revenue.states import TaskStatus, task_status
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import WORKLIST

log = logging.getLogger("fhir_server.billing")
TRIES = 3
LEASE_WAIT = 2.0  # seconds to wait for a bill's leases before trying again later


class BillingWorker(Consumer):
    name = "billing"
    batch = 50
    start: Literal["now", "beginning"] = "beginning"

    def __init__(self, *, repo: Repository, settings: Settings) -> None:
        self.repo, self.settings = repo, settings

    async def deliver(self, events: Sequence[Event]) -> int:
        for done, event in enumerate(events):
            try:
                await self._with_retries(event)
            except Exception as error:  # still failing: the runner hands it again later
                log.warning("billing deferred event=%d error=%s", event.number,
                            type(error).__name__)
                return done
        return len(events)

    async def _with_retries(self, event: Event) -> None:
        for attempt in range(1, TRIES + 1):
            try:
                await self._handle(event)
                return
            except Exception as error:  # a step's own failures became Tasks: this passes
                if attempt == TRIES:
                    raise
                log.info("billing retry event=%d attempt=%d error=%s", event.number, attempt,
                         type(error).__name__)
                await asyncio.sleep(pause_after(attempt))

    async def _handle(self, event: Event) -> None:
        encounter_id = event.id_ if "encounter-finished" in event.topics else \
            await self._retried(event)
        if encounter_id is None:
            return
        result = await bill_visit(repo=self.repo, settings=self.settings,
                                  encounter_id=encounter_id, wait=LEASE_WAIT)
        if result.task is not None:
            log.info("billing failed encounter=%s task=%s", encounter_id, result.task["id"])
        elif result.written:
            log.info("visit billed encounter=%s", encounter_id)

    async def _retried(self, event: Event) -> str | None:
        """The Encounter of a bill-visit Task this event set to ``requested`` (None: the
        event is not one)."""
        if event.type_ != "Task" or event.action == "delete":
            return None
        stored = await self.repo.current(type_="Task", id_=event.id_)
        if stored is None or stored.version != event.version or stored.text is None:
            return None  # not the current version: its own event comes later
        task = loads_stored(stored.text)
        codes = (task.get("code") or {}).get("coding") or []
        if task_status(task) is not TaskStatus.REQUESTED or not any(
                c.get("system") == WORKLIST and c.get("code") == STEP for c in codes):
            return None
        focus = (task.get("focus") or {}).get("reference")
        match = LOCAL_REF.match(focus) if isinstance(focus, str) else None
        return match.group(2) if match and match.group(1) == "Encounter" else None


def workers(*, settings: Settings, repo: Repository) -> list[Consumer]:
    """The billing worker, unless FHIR_BILL_ON_FINISH is off (``main.py`` hands it to the
    event runner)."""
    return [BillingWorker(repo=repo, settings=settings)] if settings.fhir_bill_on_finish else []
