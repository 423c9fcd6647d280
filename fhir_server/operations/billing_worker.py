"""The billing worker: bills each visit after it finishes, from the outbox.

A consumer of change events (``events/consumer.py``, named ``billing``: one process at a
time, from a durable cursor, at least once). For each ``encounter-finished`` event it runs
the bill-visit step (``bill_visit.py``). (A bill-visit Task set to ``requested`` by whoever
works the worklist is run again by the worklist worker, ``worklist_worker.py``, as every
other step's.) The clinical
write that finished the visit has committed already: billing never refuses it, and what
billing cannot do becomes a Task on the worklist.

It starts from the oldest event the outbox keeps, so a visit finished before the worker
first ran is billed too. Events handed twice, or a bill made meanwhile by
``$generate-bill`` or by another worker, bill nothing more (``bill_visit.py``). A
transient fault (the database briefly away, a bill being written by another process) is
tried again here with backoff (``events/each.py``), then the event is handed back to the
runner, which hands it again after a pause: it never makes a Task.
"""

from __future__ import annotations

import logging
from typing import Literal

from fhir_server.core.config import Settings
from fhir_server.events.consumer import Consumer
from fhir_server.events.each import EachEventConsumer
from fhir_server.events.event import Event
from fhir_server.operations.bill_visit import bill_visit
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.billing")
LEASE_WAIT = 2.0  # seconds to wait for a bill's leases before trying again later


class BillingWorker(EachEventConsumer):
    name = "billing"
    log = log
    batch = 50
    start: Literal["now", "beginning"] = "beginning"

    def __init__(self, *, repo: Repository, settings: Settings) -> None:
        self.repo, self.settings = repo, settings

    def wants(self, event: Event) -> bool:
        return "encounter-finished" in event.topics

    async def handle(self, event: Event) -> None:
        encounter_id = event.id_
        result = await bill_visit(repo=self.repo, settings=self.settings,
                                  encounter_id=encounter_id, wait=LEASE_WAIT)
        if result.task is not None:
            log.info("billing failed encounter=%s task=%s", encounter_id, result.task["id"])
        elif result.written:
            log.info("visit billed encounter=%s", encounter_id)


def workers(*, settings: Settings, repo: Repository) -> list[Consumer]:
    """The billing worker, unless FHIR_BILL_ON_FINISH is off (``main.py`` hands it to the
    event runner)."""
    return [BillingWorker(repo=repo, settings=settings)] if settings.fhir_bill_on_finish else []
