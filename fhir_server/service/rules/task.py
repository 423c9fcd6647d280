"""Task write rule: a worklist Task no worker can run again is not set to ``requested``.

An open worklist Task set to ``requested`` runs its step again in the background (the
worklist worker, ``operations/worklist_worker.py``), for every step but ``notify-patient``:
the message is not resent (``notifications/delivery.py``), the office tells the patient
another way and closes the Task. Set to ``requested`` it would sit there doing nothing, so
the update is refused (422) saying what to do instead.
"""

from __future__ import annotations

from typing import Any

from fhir_server.core.errors import Unprocessable
from fhir_server.service import write_rules as rules
from fhir_server.terminology.systems import WORKLIST

NOT_RUN_AGAIN = ("notify-patient",)  # worklist steps no worker runs again


def _step(task: dict[str, Any] | None) -> str | None:
    codes = ((task or {}).get("code") or {}).get("coding") or []
    return next((str(c.get("code")) for c in codes
                 if isinstance(c, dict) and c.get("system") == WORKLIST), None)


class TaskRules:
    def lease_names(self, change: rules.Change) -> list[str]:
        return []

    async def check(self, ctx: rules.RuleContext, change: rules.Change) -> list[rules.SideWrite]:
        after, before = change.after, change.before
        if after is None or after.get("status") != "requested" or (
                before is not None and before.get("status") == "requested"):
            return []
        step = _step(after)
        if step in NOT_RUN_AGAIN:
            raise Unprocessable(
                f"A {step} Task is not run again (neither by an update to requested nor "
                "by $retry): the message is not resent. Tell the patient another way (the "
                "Communication's about says of what), then set the Task to completed or "
                "cancelled", expression=["Task.status"], code="business-rule")
        return []
