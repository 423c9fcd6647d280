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
A transient fault (``worklist.transient``) is raised for the caller to retry.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.observability import business
from fhir_server.operations.common import commit_new
from fhir_server.operations.worklist import Failure, complete_task, open_task, transient
from fhir_server.revenue import billing
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
        return Result(written=[])
    try:
        async with repo.locks.hold(billing.lease_names(visit.keys), wait=wait):
            bill = await compose_visit_bill(repo=repo, settings=settings, visit=visit)
            written = await commit_new(repo, settings, bill.writes) if bill else []
    except FhirError as error:
        if transient(error):
            raise
        task = await open_task(repo=repo, settings=settings, step=STEP, focus=focus,
                               patient=visit.patient_ref, failure=Failure.of(error))
        return Result(written=[], task=task)
    if written:
        business.bill_issued()
    results = [f"{r['resourceType']}/{r['id']}" for r in written
               if r["resourceType"] in ("Invoice", "Claim")]
    await complete_task(repo=repo, settings=settings, step=STEP, focus=focus, results=results)
    return Result(written=written)
