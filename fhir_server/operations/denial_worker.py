"""The denials worker: each line a payer denied waits on the worklist as a work-denial Task.

A consumer of change events (``events/consumer.py``, named ``denials``: one process at a
time, from a durable cursor, at least once). For each ClaimResponse written that is
complete (from ``Claim/$submit``, a FHIR payer, or an 835 posted), the denials in it
(``revenue/denials.py``) each open a work-denial Task: ``focus`` the Claim, ``item`` the
line (``line:<sequence>``, or ``claim``), ``for`` the patient, ``statusReason`` naming
the line, its procedure, the amount denied and each reason with its CARC's text, and
``businessStatus`` coded with the denial's category
(``https://fhir-rcm-server.org/CodeSystem/denial-category``: eligibility, authorization,
coding, duplicate, timely-filing, other), so that ``Task?business-status=...|authorization``
lists the authorization denials. A person works it (correct the claim and send it again,
appeal, or write the amount off) and completes or cancels it; a later answer of the payer
that no longer denies the line completes it.

Only the claim's current answer counts: an event handed twice, or one about a version
replaced since, opens nothing more (one open Task per claim and line).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fhir_server.core.config import Settings
from fhir_server.events.consumer import Consumer
from fhir_server.events.each import EachEventConsumer, current_content
from fhir_server.events.event import Event
from fhir_server.operations.worklist import (
    Failure,
    complete_task,
    item_of,
    open_task,
    open_tasks,
)
from fhir_server.revenue.denials import CATEGORY_DISPLAY, DENIAL_CATEGORY, Denial, denials
from fhir_server.revenue.records import Resource, local_patient, read_local
from fhir_server.revenue.states import ClaimOutcome, claim_outcome
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.billing")
STEP = "work-denial"


class DenialWorker(EachEventConsumer):
    name = "denials"
    log = log
    batch = 50
    start: Literal["now", "beginning"] = "beginning"

    def __init__(self, *, repo: Repository, settings: Settings) -> None:
        self.repo, self.settings = repo, settings

    def wants(self, event: Event) -> bool:
        return event.type_ == "ClaimResponse" and event.action != "delete"

    async def handle(self, event: Event) -> None:
        response = await current_content(self.repo, event)
        if response is None or claim_outcome(response) is not ClaimOutcome.COMPLETE:
            return
        claim_ref = str((response.get("request") or {}).get("reference", ""))
        claim = await read_local(self.repo, claim_ref)
        if claim is None or claim.get("resourceType") != "Claim":
            return
        found = denials(response)
        denied = {d.item for d in found}
        for task in await open_tasks(repo=self.repo, settings=self.settings, step=STEP,
                                     focus=claim_ref):
            item = item_of(task)
            if item is not None and item not in denied:  # the payer pays it now
                await complete_task(repo=self.repo, settings=self.settings, step=STEP,
                                    focus=claim_ref, item=item,
                                    results=[f"ClaimResponse/{response['id']}"])
        patient = local_patient((claim.get("patient") or {}).get("reference"))
        for denial in found:
            await open_task(repo=self.repo, settings=self.settings, step=STEP,
                            focus=claim_ref, item=denial.item, patient=patient,
                            failure=_failure(denial, claim, response))
        if found:
            log.info("denials on the worklist claim=%s lines=%d", claim["id"], len(found))


def _procedure(claim: Resource, line: int | None) -> str:
    if line is None:
        return "the claim"
    item: Resource = next((i for i in claim.get("item") or [] if i.get("sequence") == line), {})
    codes = [str(c.get("code"))[:16] for c in (item.get("productOrService") or {}).get(
        "coding") or [] if c.get("code")]
    return f"line {line}" + (f" ({codes[0]})" if codes else "")


def _failure(denial: Denial, claim: Resource, response: Resource) -> Failure:
    """What the billing office reads: identifiers, codes and amounts only."""
    category = denial.category
    reasons = "; ".join([*(r.said() for r in denial.reasons), *denial.remarks])
    reason = (f"The payer denied {_procedure(claim, denial.line)} of Claim/{claim['id']}, "
              f"{denial.amount:.2f} ({CATEGORY_DISPLAY[category].lower()}): {reasons}. "
              f"ClaimResponse/{response['id']}. Correct the claim and send it again, appeal, "
              "or write the amount off, then complete this Task")
    issues: list[dict[str, Any]] = [
        {"severity": "error", "code": "business-rule",
         "details": {"coding": [{"system": DENIAL_CATEGORY, "code": category,
                                 "display": CATEGORY_DISPLAY[category]}],
                     "text": r.said()},
         "expression": ["ClaimResponse.adjudication" if denial.line is None else
                        f"ClaimResponse.item.where(itemSequence = {denial.line})"]}
        for r in denial.reasons]
    return Failure(reason=reason,
                   outcome={"resourceType": "OperationOutcome", "issue": issues},
                   kind={"system": DENIAL_CATEGORY, "code": category,
                         "display": CATEGORY_DISPLAY[category]})


def workers(*, settings: Settings, repo: Repository) -> list[Consumer]:
    """The denials worker (``main.py`` hands it to the event runner)."""
    return [DenialWorker(repo=repo, settings=settings)]
