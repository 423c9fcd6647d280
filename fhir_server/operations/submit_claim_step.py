"""The submit-claim step on the worklist: a claim its payer did not take.

``Claim/$submit`` (``claim_submit.py``) sends a claim to its payer's endpoint. When that
fails after the payer adapter's own retries (the payer unreachable or not answering in
time, its circuit open, its Endpoint's address not a URL, the payer refusing the claim or
answering with something that is not a usable ClaimResponse), the Claim is kept (stored
when it is new or changed) and its submit-claim Task (``worklist.py``) is opened, or
updated when one is open already: ``focus`` the Claim, ``for`` the patient,
``statusReason`` saying what to fix, the error's OperationOutcome in ``output``. The
caller still gets the error, with an issue naming the Task. Once the claim is answered
(``Task/[id]/$retry`` submits it again, or a new ``$submit`` of it), the Task is
completed with the ClaimResponse in ``output``.

A fault of this server that passes by itself (the database briefly away, a lease held by
another request) makes no Task: only the payer's failures do.
"""

from __future__ import annotations

from fhir_server.adapters.peer_errors import PayerRefused
from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError, Issue, Upstream, UpstreamTimeout
from fhir_server.operations.common import commit_new
from fhir_server.operations.worklist import Failure, complete_task, open_task, open_tasks
from fhir_server.revenue.records import Resource, local_patient
from fhir_server.storage.repository import Repository

STEP = "submit-claim"
# What the payer adapter raises when the payer did not take the claim.
PAYER_FAILURES: tuple[type[FhirError], ...] = (Upstream, UpstreamTimeout)


def reason(error: FhirError, endpoint_ref: str) -> str:
    """What to fix, in plain words: identifiers only, never the claim's content (a payer's
    own text is not passed on either: it may quote what it was sent)."""
    if isinstance(error, PayerRefused) and error.extra_issues:
        return (f"The payer at {endpoint_ref} refused the claim (its issue codes and the "
                "elements they concern are in the Task's output): correct the Claim, then "
                "retry")
    if isinstance(error, UpstreamTimeout):
        return (f"{error.diagnostics}: check that the payer is up and answering, then retry")
    return (f"{error.diagnostics}. Check that {endpoint_ref}'s address is the payer's (or "
            "its clearinghouse's) and that it is up, then retry")


async def failed(*, repo: Repository, settings: Settings, claim: Resource, store: bool,
                 previous: int | None, error: FhirError, endpoint_ref: str) -> Resource:
    """The payer did not take ``claim``: keep it (``store``: write it, replacing version
    ``previous``) and open or update its Task; the error gets an issue naming the Task.
    Returns the Task."""
    if store:
        await commit_new(repo, settings, [(claim, previous)])
    task = await open_task(repo=repo, settings=settings, step=STEP, focus=f"Claim/{claim['id']}",
                           patient=local_patient((claim.get("patient") or {}).get("reference")),
                           failure=Failure(reason=reason(error, endpoint_ref),
                                           outcome=error.outcome()))
    error.extra_issues.append(Issue("informational", "The claim waits on the worklist as "
                                    f"Task/{task['id']} ({STEP})", "information"))
    return task


async def answered(*, repo: Repository, settings: Settings, claim_id: str,
                   response_id: str) -> None:
    """The claim has its ClaimResponse: its open submit-claim Task, if any, is completed."""
    await complete_task(repo=repo, settings=settings, step=STEP, focus=f"Claim/{claim_id}",
                        results=[f"ClaimResponse/{response_id}"])


async def waiting(*, repo: Repository, settings: Settings, claim_id: str) -> bool:
    """Whether the claim waits on the worklist (an open submit-claim Task about it)."""
    return bool(await open_tasks(repo=repo, settings=settings, step=STEP,
                                 focus=f"Claim/{claim_id}"))
