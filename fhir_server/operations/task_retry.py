"""``Task/[id]/$retry``: run a worklist step again, once what blocked it was fixed.

The Task is a worklist Task (``worklist.py``) that is still open; the step named by its
code runs again for its ``focus``, at once, as the worker would: when it succeeds its
Task is ``completed`` (with what it wrote in ``output``), when it still fails the Task
stays ``failed`` with the new reason. Either way the answer is the Task as it now is.
Updating an open Task's status to ``requested`` does the same in the background, through
the worklist worker (``worklist_worker.py``), which runs ``run_step`` as the server. A
``notify-patient`` Task's message is resent by the notifications consumer, which owns the
channels (above this layer): its ``$retry`` sets it to ``requested``, which the consumer
acts on, and answers the Task so (the message follows in the background).

* ``bill-visit``: the visit is billed (``bill_visit.py``).
* ``submit-claim``: the stored Claim goes through ``Claim/$submit`` again, with the
  caller's rights (``claim_submit.py``, ``submit_claim_step.py``).
* ``check-eligibility``: the visit the Task names (its ``encounter``) is billed again, as
  for bill-visit, once the patient's Coverages tell which to bill.
* ``post-remittance``: the claim payment the Task names (its ``identifier``) is read again
  from the kept 835 (the ``focus``) and posted, or a whole file refused by the X12 poll is
  applied again (``remittance_repost.py``).

A transient fault answers as it is (409 while another process runs the step, 503 while
the database is away), and the Task is left as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from fhir_server.core.errors import Conflict, NotFound, Unprocessable
from fhir_server.core.fhirjson import loads_stored
from fhir_server.operations import (
    bill_visit,
    check_eligibility_step,
    claim_submit,
    post_remittance_step,
    remittance_repost,
    submit_claim_step,
)
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.operations.worklist import item_of
from fhir_server.revenue.records import LOCAL_REF, Resource
from fhir_server.revenue.states import OPEN_TASKS, task_status, worklist_codes
from fhir_server.service import interactions as svc
from fhir_server.storage.locks import LockBusy
from fhir_server.terminology.systems import WORKLIST, WORKLIST_ITEM


async def _bill_visit(call: Call, focus_type: str, focus_id: str) -> None:
    if focus_type != "Encounter":
        raise Unprocessable("A bill-visit Task's focus must be an Encounter",
                            expression=["Task.focus"])
    await bill_visit.bill_visit(repo=call.repo, settings=call.settings, encounter_id=focus_id)


async def _submit_claim(call: Call, focus_type: str, focus_id: str) -> None:
    """The stored Claim submitted again, as ``Claim/$submit`` of it by the caller would."""
    if focus_type != "Claim":
        raise Unprocessable("A submit-claim Task's focus must be a Claim",
                            expression=["Task.focus"])
    _, claim = await svc.current_resource(call.repo, "Claim", focus_id)
    if claim is None:
        raise Unprocessable(f"Claim/{focus_id} is no longer stored: there is nothing to "
                            "submit (cancel the Task)", expression=["Task.focus"])
    # The payer still not taking it is an answer here: its Task says why.
    with contextlib.suppress(*submit_claim_step.PAYER_FAILURES):
        await claim_submit.run(replace(call, params={"resource": [claim]}, id_=None))


async def _check_eligibility(call: Call, focus_type: str, focus_id: str) -> None:
    """The visit the Task is about billed again (its focus is the Coverage in question)."""
    visit = ((await _task(call)).get("encounter") or {}).get("reference")
    match = LOCAL_REF.match(visit) if isinstance(visit, str) else None
    if match is None or match.group(1) != "Encounter":
        raise Unprocessable("A check-eligibility Task names the visit to bill as its "
                            "encounter (Encounter/[id])", expression=["Task.encounter"])
    await bill_visit.bill_visit(repo=call.repo, settings=call.settings,
                                encounter_id=match.group(2))


async def _post_remittance(call: Call, focus_type: str, focus_id: str) -> None:
    """The claim payment the Task names posted again from the kept 835."""
    if focus_type == "Endpoint":
        raise Unprocessable("This post-remittance Task is about a file too large to read, "
                            "which was not kept: there is nothing to apply again. Cancel it "
                            "once the clearinghouse has sent the file again in smaller ones",
                            expression=["Task.focus"])
    if focus_type != "DocumentReference":
        raise Unprocessable("A post-remittance Task's focus must be a DocumentReference (the "
                            "file as kept)", expression=["Task.focus"])
    item = item_of(await _task(call))
    if item is None:
        raise Unprocessable(f"A post-remittance Task names its claim payment by an identifier "
                            f"under {WORKLIST_ITEM}", expression=["Task.identifier"])
    if item == post_remittance_step.FILE_ITEM:  # a whole file the X12 poll refused
        await remittance_repost.repost_file(repo=call.repo, settings=call.settings,
                                            document_id=focus_id)
        return
    await remittance_repost.repost(repo=call.repo, settings=call.settings,
                                   document_id=focus_id, item=item)


# Resent by the notifications consumer when its Task is set to requested (the channels are
# that consumer's, above this layer: notifications/delivery.py); $retry sets it so.
NOTIFY = "notify-patient"

# The steps $retry can run, by Task code: each runs the step for the focus (Type, id),
# and opens, updates or completes the Task itself.
RETRIES: dict[str, Callable[[Call, str, str], Awaitable[None]]] = {
    bill_visit.STEP: _bill_visit,
    submit_claim_step.STEP: _submit_claim,
    check_eligibility_step.STEP: _check_eligibility,
    post_remittance_step.STEP: _post_remittance,
}


async def run(call: Call) -> Resource:
    assert call.id_ is not None
    await call.check(type_="Task", interaction="update", id_=call.id_)
    task = await _task(call)
    call.concerns((task.get("for") or {}).get("reference"))
    if step_of(task) is None and NOTIFY in worklist_codes(task):
        return await _request_again(call, task)
    try:
        await run_step(call, task)
    except LockBusy:
        raise Conflict("This step is being run by another process; try again") from None
    return await _task(call)


def step_of(task: dict[str, Any]) -> str | None:
    """The worklist step a Task is about, if it is one this server can run again."""
    return next((code for code in worklist_codes(task) if code in RETRIES), None)


async def run_step(call: Call, task: dict[str, Any]) -> None:
    """Run the step of the open worklist ``task`` (``call.id_``) again for its focus: the
    step completes the Task, or fails it with the new reason. Raises Unprocessable when the
    Task is not one to run (not a step, closed, no local focus), LockBusy while another
    process runs it. Shared by ``$retry`` and the worklist worker (``worklist_worker.py``)."""
    step = step_of(task)
    if step is None and NOTIFY in worklist_codes(task):
        raise Unprocessable(f"A {NOTIFY} Task is not retried here: update its status to "
                            "requested and the notifications worker sends the message "
                            "again", expression=["Task.code"], code="business-rule")
    if step is None:
        raise Unprocessable(f"Task/{call.id_} is not a worklist step this server can retry "
                            f"(code under {WORKLIST}: {', '.join(sorted(RETRIES))})",
                            expression=["Task.code"])
    if task_status(task) not in OPEN_TASKS:
        raise Unprocessable(f"Task/{call.id_} is {str(task.get('status'))[:32]}: only an "
                            "open Task can be retried", expression=["Task.status"],
                            code="business-rule")
    focus = (task.get("focus") or {}).get("reference")
    match = LOCAL_REF.match(focus) if isinstance(focus, str) else None
    if match is None:
        raise Unprocessable("The Task's focus must be a local reference (Type/id)",
                            expression=["Task.focus"])
    await RETRIES[step](call, match.group(1), match.group(2))


async def _request_again(call: Call, task: dict[str, Any]) -> Resource:
    """A notify-patient Task set to ``requested``, for the notifications consumer to send
    its message again. Returns the Task as stored."""
    if task_status(task) not in OPEN_TASKS:
        raise Unprocessable(f"Task/{call.id_} is {str(task.get('status'))[:32]}: only an "
                            "open Task can be retried", expression=["Task.status"],
                            code="business-rule")
    if task.get("status") == "requested":
        return task  # already waiting for the consumer
    # As the caller's update would be: the Task's write rule refuses it when no channel
    # is configured (nothing could resend), and the change is an event the consumer takes.
    again = {k: v for k, v in task.items() if k != "meta"} | {"status": "requested"}
    written = await svc.update(repo=call.repo, settings=call.settings, type_="Task",
                               id_=str(task["id"]), resource=again,
                               if_match=int(task["meta"]["versionId"]))
    stored: Resource = loads_stored(written.stored.text or "{}")
    return stored


async def _task(call: Call) -> dict[str, Any]:
    assert call.id_ is not None
    current = await call.repo.current(type_="Task", id_=call.id_)
    if current is None or current.text is None:
        raise NotFound(f"Task/{call.id_} is not known")
    task: dict[str, Any] = loads_stored(current.text)
    if not await call.may_see("Task", task):
        raise NotFound(f"Task/{call.id_} is not known")
    return task


TASK_RETRY = Operation(
    id="Task-retry", code="retry", title="Run a worklist step again",
    description="Runs the step of an open worklist Task (bill-visit, submit-claim, "
    "check-eligibility, post-remittance) again "
    "for its focus: on success the Task is completed with what the step wrote in its output; on a failure "
    "it stays failed with the new reason. A notify-patient Task is set to requested: the "
    "notifications worker sends its message again. Returns the Task.",
    resource=("Task",), type_level=False, instance=True,
    requires=(("Task", "u"), ("Invoice", "c"), ("ChargeItem", "u"), ("Claim", "c"),
              ("Invoice", "u"), ("PaymentReconciliation", "u"), ("ClaimResponse", "u")),
    parameters=(Param("return", "out", 1, "1", "Task", "The Task after the run"),),
    run=run)
