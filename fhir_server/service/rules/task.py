"""Task write rule: a worklist Task no worker can run again is not set to ``requested``.

An open worklist Task set to ``requested`` runs its step again in the background: the
worklist worker (``operations/worklist_worker.py``) runs the billing steps, the
notifications consumer (``notifications/delivery.py``) resends a ``notify-patient``
message. With no notification channel configured there is no such consumer: set to
``requested`` the Task would sit there doing nothing, so the update is refused (422)
saying what to do instead.
"""

from __future__ import annotations

from fhir_server.core.errors import Unprocessable
from fhir_server.revenue.states import worklist_codes
from fhir_server.service import write_rules as rules

NOTIFY = "notify-patient"


class TaskRules:
    def lease_names(self, change: rules.Change) -> list[str]:
        return []

    async def check(self, ctx: rules.RuleContext, change: rules.Change) -> list[rules.SideWrite]:
        after, before = change.after, change.before
        if after is None or after.get("status") != "requested" or (
                before is not None and before.get("status") == "requested"):
            return []
        if (NOTIFY in worklist_codes(after)
                and not ctx.settings.notification_channels_configured):
            raise Unprocessable(
                "No notification channel is configured (FHIR_SMTP_URL, FHIR_SMS_URL and "
                "FHIR_SMS_FROM): nothing can resend this message. Tell the patient another "
                "way (the Communication's about says of what), then set the Task to "
                "completed or cancelled", expression=["Task.status"], code="business-rule")
        return []

