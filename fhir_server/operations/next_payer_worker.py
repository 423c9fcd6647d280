"""The next-payer worker: what a payer's adjudication leaves is billed to the next Coverage.

A consumer of change events (``events/consumer.py``, named ``next-payer``: one process at a
time, from a durable cursor, at least once). For each ClaimResponse written (``claim-response``
topic: from ``Claim/$submit``, a FHIR payer's answer, or an X12 835 posted) that is complete,
whose Claim is on this server and lists a Coverage after the focal one, it makes the claim to
that Coverage (``revenue/cob.py``) and submits it as ``Claim/$submit`` does
(``claim_submit.py``): to the payer's endpoint, or adjudicated here when this server is the
payer. Its answer posts to the same Invoice, and that answer's own event bills a third
Coverage in turn.

A payer that does not take the claim leaves it on the worklist as a submit-claim Task
(``submit_claim_step.py``), as for any claim; a claim the data do not allow (its Coverage
gone, say) is kept with a submit-claim Task saying why, and retried from there. An event
handed twice, or the answer of a claim already followed, submits nothing more: the next
claim's id comes from the claim it follows. A transient fault is tried again
(``events/each.py``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.events.consumer import Consumer
from fhir_server.events.each import EachEventConsumer, current_content
from fhir_server.events.event import Event
from fhir_server.operations import claim_submit
from fhir_server.operations import submit_claim_step as step
from fhir_server.operations.base import Call
from fhir_server.operations.common import commit_new
from fhir_server.operations.worklist import Failure, open_task, transient
from fhir_server.revenue.cob import (
    earlier_responses,
    next_claim_id,
    next_insurance,
    next_payer_claim,
)
from fhir_server.revenue.records import LOCAL_REF, Resource, local_patient, read_local
from fhir_server.revenue.states import ClaimOutcome, claim_outcome
from fhir_server.storage.model import instant, now_ms
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.billing")


class NextPayerWorker(EachEventConsumer):
    name = "next-payer"
    log = log
    batch = 50
    start: Literal["now", "beginning"] = "beginning"

    def __init__(self, *, repo: Repository, settings: Settings, services: Any) -> None:
        self.repo, self.settings, self.services = repo, settings, services

    def wants(self, event: Event) -> bool:
        return event.type_ == "ClaimResponse" and event.action != "delete"

    async def handle(self, event: Event) -> None:
        response = await current_content(self.repo, event)
        if response is None or claim_outcome(response) is not ClaimOutcome.COMPLETE:
            return  # a later version has its own event; only a complete answer is followed
        claim = await read_local(self.repo, (response.get("request") or {}).get("reference"))
        if claim is None or claim.get("resourceType") != "Claim":
            return
        following = next_insurance(claim)
        if following is None:
            return
        if await read_local(self.repo, f"Claim/{next_claim_id(str(claim['id']))}") is not None:
            return  # followed already (its answer, or its Task, is with it)
        earlier = [r for ref in earlier_responses(claim)
                   if (r := await read_local(self.repo, ref)) is not None]
        coverage = await read_local(self.repo, (following.get("coverage") or {}).get("reference"))
        payors = [p for p in (coverage or {}).get("payor") or []
                  if LOCAL_REF.match(str((p or {}).get("reference", "")))]
        after = next_payer_claim(claim, response, earlier=earlier,
                                 payor=payors[0] if payors else None,
                                 created=instant(now_ms()))
        if after is None:
            return
        await self._submit(after)

    async def _submit(self, claim: Resource) -> None:
        call = Call(repo=self.repo, settings=self.settings, services=self.services,
                    params={"resource": [claim]})  # no authorize: the server's own run
        try:
            answer = await claim_submit.run(call)
        except step.PAYER_FAILURES:  # kept, with its submit-claim Task
            log.info("next payer's claim waits on the worklist claim=%s", claim["id"])
            return
        except FhirError as error:
            if transient(error):
                raise
            if await read_local(self.repo, f"Claim/{claim['id']}") is None:
                # Refused before it was sent (a payer's refusal keeps it with its Task).
                await commit_new(self.repo, self.settings, [(claim, None)])
                await open_task(repo=self.repo, settings=self.settings, step=step.STEP,
                                focus=f"Claim/{claim['id']}",
                                patient=local_patient((claim.get("patient") or {}).get(
                                    "reference")),
                                failure=Failure.of(error))
            log.info("next payer's claim waits on the worklist claim=%s", claim["id"])
            return
        log.info("next payer billed claim=%s response=%s", claim["id"], answer.get("id"))


def workers(*, settings: Settings, repo: Repository, services: Any) -> list[Consumer]:
    """The next-payer worker (``main.py`` hands it to the event runner)."""
    return [NextPayerWorker(repo=repo, settings=settings, services=services)]
