"""``Task/[id]/$retry``: run a worklist step again, once what blocked it was fixed.

The Task is a worklist Task (``worklist.py``) that is still open; the step named by its
code runs again for its ``focus``, at once, as the worker would: when it succeeds its
Task is ``completed`` (with what it wrote in ``output``), when it still fails the Task
stays ``failed`` with the new reason. Either way the answer is the Task as it now is.
Updating the Task's status to ``requested`` does the same through the worker. A transient
fault answers as it is (409 while another process runs the step, 503 while the database
is away), and the Task is left as it was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.errors import Conflict, NotFound, Unprocessable
from fhir_server.core.fhirjson import loads_stored
from fhir_server.operations import bill_visit
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.revenue.records import LOCAL_REF, Resource
from fhir_server.revenue.states import OPEN_TASKS, task_status
from fhir_server.storage.locks import LockBusy
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import WORKLIST


async def _bill_visit(repo: Repository, settings: Settings, focus_type: str,
                      focus_id: str) -> None:
    if focus_type != "Encounter":
        raise Unprocessable("A bill-visit Task's focus must be an Encounter",
                            expression=["Task.focus"])
    await bill_visit.bill_visit(repo=repo, settings=settings, encounter_id=focus_id)


# The steps $retry can run, by Task code: each runs the step for the focus (Type, id),
# and opens, updates or completes the Task itself.
RETRIES: dict[str, Callable[[Repository, Settings, str, str], Awaitable[None]]] = {
    bill_visit.STEP: _bill_visit,
}


async def run(call: Call) -> Resource:
    assert call.id_ is not None
    await call.check(type_="Task", interaction="update", id_=call.id_)
    task = await _task(call)
    step = next((c.get("code") for c in (task.get("code") or {}).get("coding") or []
                 if c.get("system") == WORKLIST and c.get("code") in RETRIES), None)
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
    call.concerns((task.get("for") or {}).get("reference"))
    try:
        await RETRIES[str(step)](call.repo, call.settings, match.group(1), match.group(2))
    except LockBusy:
        raise Conflict("This step is being run by another process; try again") from None
    return await _task(call)


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
    description="Runs the step of an open worklist Task (bill-visit) again for its focus: "
    "on success the Task is completed with what the step wrote in its output; on a failure "
    "it stays failed with the new reason. Returns the Task.",
    resource=("Task",), type_level=False, instance=True,
    requires=(("Task", "u"), ("Invoice", "c"), ("ChargeItem", "u"), ("Claim", "c")),
    parameters=(Param("return", "out", 1, "1", "Task", "The Task after the run"),),
    run=run)
