"""The worklist: what a background step could not do, as FHIR Tasks for the billing office.

A step (``STEPS``: bill-visit, submit-claim, check-eligibility, post-remittance,
notify-patient, work-denial) that fails
for a reason someone must fix opens a Task about what it worked on (``focus``):

* ``code``: the step, under ``https://fhir-rcm-server.org/CodeSystem/worklist``;
* ``status`` ``failed``, ``statusReason`` saying in plain words what to fix (the
  diagnostics of the error: the setting to set, the code without a price), ``businessStatus``
  for the billing office, and the error's OperationOutcome in ``output`` (contained);
* ``for`` the patient, ``encounter`` the visit when the step is about one (and its focus is
  not the Encounter), ``authoredOn`` when it first failed, ``lastModified`` the last time.

There is one open Task per (step, focus): a second failure updates it with the new reason.
When one focus holds several items that fail on their own (an 835 and its claim payments),
each has its Task, told apart by ``item`` (the Task's identifier under ``WORKLIST_ITEM``).
When the step succeeds (after a fix, by ``Task/[id]/$retry`` or an update to ``requested``)
its open Task is ``completed``, with what the step wrote in ``output``. Status changes go
through the Task transition table (``revenue/states.py``).

Faults that pass by themselves (the database briefly away, a lease held by another
process, a version that changed meanwhile) are not the worklist's: ``transient`` tells
them apart, and the caller retries them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.operations.common import commit_new, now_instant
from fhir_server.revenue.records import Resource
from fhir_server.revenue.states import OPEN_TASKS, TaskStatus, task_status, transition
from fhir_server.service import interactions as svc
from fhir_server.service.criteria import search_token
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import WORKLIST, WORKLIST_ITEM

# The steps, as Task.code.coding.code (other tools rely on these names), and their display.
STEPS: dict[str, str] = {
    "bill-visit": "Bill the visit",
    "submit-claim": "Submit the claim to the payer",
    "check-eligibility": "Check the patient's eligibility",
    "post-remittance": "Post the remittance",
    # A patient notification no channel took (fhir_server/notifications/delivery.py).
    "notify-patient": "Notify the patient",
    # A line (or claim) the payer denied (denial_worker.py): worked by a person.
    "work-denial": "Work the denial",
}
OUTCOME_ID = "outcome"
WAITING = "Waiting for the billing office: fix what statusReason says, then retry"
DONE = "Done"


@dataclass(frozen=True)
class Failure:
    """Why a step failed: the reason in plain words, and the OperationOutcome."""

    reason: str
    outcome: dict[str, Any]
    # A Coding for ``businessStatus`` (searchable: ``business-status``), besides its text.
    kind: dict[str, str] | None = None

    @classmethod
    def of(cls, error: FhirError) -> Failure:
        return cls(reason=error.diagnostics, outcome=error.outcome())


def transient(error: BaseException) -> bool:
    """Whether a fault may pass by itself (try again later) rather than need a fix: every
    error but a FHIR error about the data (4xx other than 409 Conflict and 429)."""
    return not (isinstance(error, FhirError) and 400 <= error.status < 500
                and error.status not in (409, 429))


def lease_names(step: str, focus: str, item: str | None = None) -> list[str]:
    """The lease under which a (step, focus[, item])'s Task is opened or completed."""
    return [f"worklist:{step}:{focus}" + (f":{item}" if item else "")]


async def open_tasks(*, repo: Repository, settings: Settings, step: str,
                     focus: str, item: str | None = None) -> list[Resource]:
    """The open Tasks of a step about ``focus`` (one, unless someone wrote another); with
    ``item``, those about that item of it only."""
    criteria = [("code", search_token(WORKLIST, step)), ("focus", focus)]
    if item:
        criteria.append(("identifier", search_token(WORKLIST_ITEM, item)))
    found = await svc.find_resources(repo=repo, settings=settings, type_="Task",
                                     criteria=criteria)
    return sorted((t for t in found if task_status(t) in OPEN_TASKS),
                  key=lambda t: (str(t.get("authoredOn", "")), str(t.get("id"))))


async def open_task(*, repo: Repository, settings: Settings, step: str, focus: str,
                    patient: str | None, failure: Failure, item: str | None = None,
                    encounter: str | None = None) -> Resource:
    """Record a failure of a step about ``focus`` (or its ``item``): its open Task failed
    with this reason (created when there is none). Returns the Task as stored."""
    async with repo.locks.hold(lease_names(step, focus, item)):
        current = await open_tasks(repo=repo, settings=settings, step=step, focus=focus,
                                   item=item)
        if not current:
            task = new_task(step=step, focus=focus, patient=patient, failure=failure,
                            item=item, encounter=encounter)
            [stored] = await commit_new(repo, settings, [(task, None)])
            return stored
        task = {k: v for k, v in current[0].items() if k != "meta"}
        _fail(task, failure, now_instant())
        [stored] = await commit_new(repo, settings, [(task, int(current[0]["meta"]["versionId"]))])
        return stored


def item_of(task: Resource) -> str | None:
    """Which item of its focus a worklist Task is about (its identifier under
    ``WORKLIST_ITEM``), or None."""
    return next((str(i["value"]) for i in task.get("identifier") or []
                 if i.get("system") == WORKLIST_ITEM and i.get("value")), None)


def new_task(*, step: str, focus: str, patient: str | None, failure: Failure,
             item: str | None = None, encounter: str | None = None) -> Resource:
    """A new failed Task, not yet written: for a step whose focus is written in the same
    commit (so it has no Task yet), which commits it with what it writes."""
    now = now_instant()
    task: Resource = {
        "resourceType": "Task", "id": str(uuid.uuid4()), "intent": "order",
        "code": {"coding": [{"system": WORKLIST, "code": step, "display": STEPS[step]}],
                 "text": STEPS[step]},
        "description": STEPS[step], "focus": {"reference": focus}, "authoredOn": now}
    if patient:
        task["for"] = {"reference": patient}
    if item:
        task["identifier"] = [{"system": WORKLIST_ITEM, "value": item}]
    if encounter:
        task["encounter"] = {"reference": encounter}
    _fail(task, failure, now)
    return task


async def fail_task(*, repo: Repository, settings: Settings, task: Resource,
                    failure: Failure) -> Resource | None:
    """The open Task as read (``task``, with its meta) failed again with ``failure``: for a
    Task whose step could not even be run (its focus gone, not a local reference). None
    when it is no longer open; a version changed meanwhile raises (transient)."""
    if task_status(task) not in OPEN_TASKS:
        return None
    failed = {k: v for k, v in task.items() if k != "meta"}
    _fail(failed, failure, now_instant())
    [stored] = await commit_new(repo, settings, [(failed, int(task["meta"]["versionId"]))])
    return stored


def _fail(task: Resource, failure: Failure, now: str) -> None:
    task["status"] = transition("Task", task.get("status"), TaskStatus.FAILED)
    task["statusReason"] = {"text": failure.reason}
    task["businessStatus"] = {"text": WAITING,
                              **({"coding": [failure.kind]} if failure.kind else {})}
    task["lastModified"] = now
    task["contained"] = [{**failure.outcome, "id": OUTCOME_ID}]
    task["output"] = [_output("OperationOutcome", f"#{OUTCOME_ID}")]


async def complete_task(*, repo: Repository, settings: Settings, step: str, focus: str,
                        results: Sequence[str] = (), item: str | None = None) -> list[Resource]:
    """The step about ``focus`` (or its ``item``) is done: its open Tasks are completed,
    with ``results`` (references to what the step wrote) as their output. Returns them as
    stored."""
    async with repo.locks.hold(lease_names(step, focus, item)):
        writes: list[tuple[Resource, int | None]] = []
        for current in await open_tasks(repo=repo, settings=settings, step=step, focus=focus,
                                        item=item):
            task = {k: v for k, v in current.items()
                    if k not in ("meta", "statusReason", "contained", "output")}
            task["status"] = transition("Task", task.get("status"), TaskStatus.COMPLETED)
            task["businessStatus"] = {"text": DONE}
            task["lastModified"] = now_instant()
            if results:
                task["output"] = [_output(r.split("/", 1)[0], r) for r in results]
            writes.append((task, int(current["meta"]["versionId"])))
        return await commit_new(repo, settings, writes) if writes else []


def _output(kind: str, reference: str) -> dict[str, Any]:
    return {"type": {"text": kind}, "valueReference": {"reference": reference}}
