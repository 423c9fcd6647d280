"""The worklist worker: an open worklist Task set to ``requested`` runs its step again.

Whoever works the worklist (``worklist.py``) fixes what a Task's ``statusReason`` says and
then either calls ``Task/[id]/$retry`` (the step runs in the request) or updates the Task's
status to ``requested``: this consumer of change events (``events/consumer.py``, named
``worklist``: one process at a time, from a durable cursor, at least once) sees the
update and runs the step the same way (``task_retry.run_step``). The step completes the
Task with what it wrote in ``output``, or fails it again with the new reason.

The event is acted on only while it is the Task's current version and the Task is a
worklist step set to ``requested``: an event handed twice, or after the Task moved on,
runs nothing. A step that cannot even start (its focus gone or not a local reference) fails
the Task with that reason, rather than leave it ``requested``. A transient fault (the
database away, the step's lease held by another process, a version changed meanwhile) is
tried again here with backoff, then handed back to the runner (``events/each.py``).

The run acts as the server itself, as the billing worker and the X12 poller do: its
``Call`` has no caller (no access check, nothing hidden), the payer adapter is the app's
(``Services``). Who asked is the user whose update set the Task to ``requested``: that
update is audited as theirs; what the step then writes is the server's, with no
AuditEvent of its own (as for the billing worker's bills).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.core.fhirjson import loads_stored
from fhir_server.events.consumer import Consumer
from fhir_server.events.each import EachEventConsumer, current_content
from fhir_server.events.event import Event
from fhir_server.operations.base import Call
from fhir_server.operations.task_retry import run_step, step_of
from fhir_server.operations.worklist import Failure, fail_task, transient
from fhir_server.revenue.states import TaskStatus, task_status
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.worklist")


class WorklistWorker(EachEventConsumer):
    name = "worklist"
    log = log
    batch = 50
    # A Task set to requested before the worker first ran is run too (only the current
    # version of a Task still requested runs anything).
    start: Literal["now", "beginning"] = "beginning"

    def __init__(self, *, repo: Repository, settings: Settings, services: Any) -> None:
        self.repo, self.settings, self.services = repo, settings, services

    def wants(self, event: Event) -> bool:
        return event.type_ == "Task" and event.action != "delete"

    async def handle(self, event: Event) -> None:
        task = await current_content(self.repo, event)
        if task is None:
            return  # not the current version: its own event comes later
        if task_status(task) is not TaskStatus.REQUESTED or step_of(task) is None:
            return
        call = Call(repo=self.repo, settings=self.settings, services=self.services,
                    params={}, id_=event.id_)  # no authorize, no sees: the server's own run
        try:
            await run_step(call, task)
        except FhirError as error:
            if transient(error):
                raise
            # The step could not start (its focus gone, malformed): the Task says why.
            await fail_task(repo=self.repo, settings=self.settings, task=task,
                            failure=Failure.of(error))
        after = await self.repo.current(type_="Task", id_=event.id_)
        status = task_status(loads_stored(after.text)) if after and after.text else None
        log.info("worklist step run task=%s step=%s status=%s", event.id_, step_of(task),
                 status.value if status else None)


def workers(*, settings: Settings, repo: Repository, services: Any) -> list[Consumer]:
    """The worklist worker (``main.py`` hands it to the event runner)."""
    return [WorklistWorker(repo=repo, settings=settings, services=services)]
