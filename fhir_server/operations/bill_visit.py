"""The bill-visit step: bill a finished visit, or put it on the worklist.

Run by the billing worker (``billing_worker.py``) when an Encounter finishes, and again by
``Task/[id]/$retry`` (or the worker, when a bill-visit Task is set to ``requested``). The
bill is composed by the same code as ``Invoice/$generate-bill``
(``revenue/visit_bill.py`` over ``revenue/billing.py``) and committed all or nothing under
the bill's leases (``bill:Appointment/[id]``, ``bill:Encounter/[id]``, the ones
``$generate-bill`` takes), so a visit has exactly one issued Invoice whoever bills it and
however often: a visit already billed, or with nothing to bill, writes nothing.

A bill that cannot be composed (a code without a price, an insured patient's Claim without
a provider) opens the visit's bill-visit Task (``worklist.py``); a bill made completes it.
A bill that cannot pick the patient's Coverage without a guess opens a check-eligibility
Task instead (``check_eligibility_step.py``), and an open bill-visit Task of the visit
is pointed at it; a bill made completes both.
A transient fault (``worklist.transient``) is raised for the caller to retry.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.observability import business
from fhir_server.operations import check_eligibility_step
from fhir_server.operations.common import commit_new
from fhir_server.operations.worklist import (
    Failure,
    complete_task,
    open_task,
    open_tasks,
    transient,
)
from fhir_server.revenue import billing
from fhir_server.revenue.coverage import CoverageUndecided
from fhir_server.revenue.records import Resource
from fhir_server.revenue.visit_bill import compose_visit_bill, finished_visit
from fhir_server.storage.repository import Repository

STEP = "bill-visit"


@dataclass(frozen=True)
class Result:
    """What one run of the step did: the resources it wrote (none: nothing to bill, or
    billed already), or the Task it left failed."""

    written: list[Resource]
    task: Resource | None = None


async def bill_visit(*, repo: Repository, settings: Settings, encounter_id: str,
                     wait: float = 10.0) -> Result:
    """Bill the Encounter's visit; on a failure someone must fix, open or update its Task.
    ``LockBusy`` when another process holds the bill's leases for ``wait`` seconds."""
    focus = f"Encounter/{encounter_id}"
    visit = await finished_visit(repo, encounter_id)
    if visit is None:  # not (or no longer) a finished visit of a patient: nothing to bill
        await complete_task(repo=repo, settings=settings, step=STEP, focus=focus)
        await check_eligibility_step.settled(repo=repo, settings=settings, visit=focus)
        return Result(written=[])
    try:
        async with repo.locks.hold(billing.lease_names(visit.keys), wait=wait):
            bill = await compose_visit_bill(repo=repo, settings=settings, visit=visit)
            written = await commit_new(repo, settings, bill.writes) if bill else []
    except FhirError as error:
        if transient(error):
            raise
        if isinstance(error, CoverageUndecided):
            task = await _check_eligibility(repo, settings, visit.patient_ref, focus, error)
            return Result(written=[], task=task)
        task = await open_task(repo=repo, settings=settings, step=STEP, focus=focus,
                               patient=visit.patient_ref, failure=Failure.of(error))
        return Result(written=[], task=task)
    if written:
        business.bill_issued()
    results = [f"{r['resourceType']}/{r['id']}" for r in written
               if r["resourceType"] in ("Invoice", "Claim")]
    await complete_task(repo=repo, settings=settings, step=STEP, focus=focus, results=results)
    await check_eligibility_step.settled(repo=repo, settings=settings, visit=focus,
                                         results=results)
    return Result(written=written)


async def _check_eligibility(repo: Repository, settings: Settings, patient: str, focus: str,
                             error: CoverageUndecided) -> Resource:
    """The visit waits on a check of the patient's eligibility: its check-eligibility Task,
    and its open bill-visit Task (an earlier failure), if any, now says so."""
    task = await check_eligibility_step.failed(repo=repo, settings=settings, visit=focus,
                                               patient=patient, error=error)
    if await open_tasks(repo=repo, settings=settings, step=STEP, focus=focus):
        await open_task(repo=repo, settings=settings, step=STEP, focus=focus, patient=patient,
                        failure=Failure(reason=f"Waiting for Task/{task['id']} "
                                        f"({check_eligibility_step.STEP}): {error.diagnostics}",
                                        outcome=error.outcome()))
    return task
