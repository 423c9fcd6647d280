"""The check-eligibility step on the worklist: a visit's bill that cannot pick its Coverage.

A bill (``bill_visit.py``, the billing worker and ``$retry``) claims against the patient's
Coverage in force on the service day, the lowest ``order`` first
(``revenue/coverage.billed_coverage``). When the patient has active Coverage but none is
in force that day, or two or more in force share the lowest ``order`` (or have none), the
bill is not guessed: nothing is written, and the visit waits as a check-eligibility Task
(``worklist.py``): ``focus`` the Coverage in question (the one ended last, or the first of
those tied), ``for`` the patient, ``encounter`` and ``identifier`` (``item``) the visit's
Encounter, so a patient's visits each have their Task; ``statusReason`` names the
Coverages, the day and what to set. A patient with no active Coverage at all is billed as
before (the patient pays): that is no question of eligibility.

The check-eligibility Task is the visit's one work item for this: an open bill-visit Task
of the visit (an earlier failure) is updated to point at it. ``Task/[id]/$retry`` bills
the visit again; once billed, both are completed with the Invoice (and Claim) in
``output``. While a visit waits, its Task keeps its first focus, whatever Coverage a later
failure concerns (its statusReason says which).
"""

from __future__ import annotations

from collections.abc import Sequence

from fhir_server.core.config import Settings
from fhir_server.operations.worklist import Failure, complete_task, open_task
from fhir_server.revenue.coverage import CoverageUndecided
from fhir_server.revenue.records import Resource
from fhir_server.revenue.states import OPEN_TASKS, task_status
from fhir_server.service import interactions as svc
from fhir_server.service.criteria import search_token
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import WORKLIST, WORKLIST_ITEM

STEP = "check-eligibility"


async def waiting(*, repo: Repository, settings: Settings, visit: str) -> list[Resource]:
    """The open check-eligibility Tasks of a visit (``Encounter/[id]``), whatever their
    focus."""
    found = await svc.find_resources(repo=repo, settings=settings, type_="Task", criteria=[
        ("code", search_token(WORKLIST, STEP)), ("identifier", search_token(WORKLIST_ITEM,
                                                                           visit))])
    return sorted((t for t in found if task_status(t) in OPEN_TASKS),
                  key=lambda t: (str(t.get("authoredOn", "")), str(t.get("id"))))


async def failed(*, repo: Repository, settings: Settings, visit: str, patient: str,
                 error: CoverageUndecided) -> Resource:
    """The visit's bill cannot pick its Coverage: open (or update) its Task."""
    current = await waiting(repo=repo, settings=settings, visit=visit)
    focus = str(current[0]["focus"]["reference"]) if current else error.focus
    return await open_task(repo=repo, settings=settings, step=STEP, focus=focus, item=visit,
                           patient=patient, encounter=visit, failure=Failure.of(error))


async def settled(*, repo: Repository, settings: Settings, visit: str,
                  results: Sequence[str] = ()) -> None:
    """The visit is billed (or needs no bill): its open Tasks are completed."""
    for task in await waiting(repo=repo, settings=settings, visit=visit):
        await complete_task(repo=repo, settings=settings, step=STEP,
                            focus=str(task["focus"]["reference"]), item=visit,
                            results=results)
