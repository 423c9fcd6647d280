"""The post-remittance step on the worklist: an 835 claim payment that could not be posted.

``PaymentReconciliation/$import-835`` and the X12 poll (``remittance_posting.py``) post
each claim payment (``CLP``) of an 835 to the Claim it names. One that cannot be posted
is set aside, and the others are posted as before:

* its ``CLP01`` names no Claim this server sent to that payer (not stored, or billed to
  another payer);
* it does not balance (``CLP03`` - ``CLP04`` against its adjustments, or a service line's
  ``SVC02`` - ``SVC03`` against its own).

It stays an unallocated ``detail`` of the PaymentReconciliation, and opens its own
post-remittance Task (``worklist.py``), in the same commit as the posting (so a crash
cannot leave a claim payment set aside without its Task): ``focus`` the 835 as this server keeps it (the
DocumentReference holding the interchange, which is what a retry reads again), the claim
payment as the Task's ``identifier`` (``item``: CLP segment position and CLP01), ``for``
the Claim's patient when the Claim is known, ``statusReason`` naming CLP01, the payer's
claim number (CLP07) and the amounts that do not match. ``Task/[id]/$retry``
(``remittance_repost.py``) posts that claim payment again (once the Claim it names is
stored, say) and completes the Task with the ClaimResponse in ``output``.

A payment whose total does not match its claim payments (``BPR02``) is refused whole, as
are files that are not valid X12: nothing is posted, and the caller of ``$import-835`` is
answered 400. The X12 poll has no caller to answer: a file it fetches and cannot apply
whole (this, an unknown payer, a 277CA refused) is kept as received (a DocumentReference
whose id derives from the file, so a file fetched twice is kept once) with a failed
post-remittance Task for the whole file (``item`` ``FILE_ITEM``), its ``statusReason``
saying why (for BPR02: ISA13, ST02, BPR02 and the sum it should equal). Its ``$retry``
applies the kept file again: posted once what it names is stored (its payer, say), or
failed again with the reason of now. A file too large to read is not kept
(``set_aside_unkept``).
"""

from __future__ import annotations

import hashlib

from fhir_server.adapters.payer import Exchanged
from fhir_server.adapters.x12.remittance import ClaimPayment, Unbalanced
from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError, Issue, Unprocessable
from fhir_server.operations.common import commit_new
from fhir_server.operations.interchanges import interchange_document
from fhir_server.operations.remittance_claims import REVERSAL
from fhir_server.operations.worklist import Failure, complete_task, new_task, open_task
from fhir_server.revenue.records import Resource, local_patient
from fhir_server.revenue.states import ClaimOutcome, claim_outcome
from fhir_server.storage.repository import Repository

STEP = "post-remittance"
FILE_ITEM = "835-whole"  # the item of a whole-file Task (no CLP: never CLP<n>:...)


def item_of(payment: ClaimPayment) -> str:
    """The claim payment's name among its 835's: CLP segment position and CLP01."""
    return f"CLP{payment.position}:{payment.control[:64]}"


def problem(payment: ClaimPayment, claim: Resource | None, payer_ref: str,
            previous: Resource | None = None) -> FhirError | None:
    """Why the claim payment cannot be posted to ``claim`` (None: it can), in plain words:
    identifiers and amounts only. ``previous``: the claim's ClaimResponse now (a reversal
    needs a posted payment to reverse)."""
    who = (f"The claim payment CLP01 {payment.control[:38]}"
           + (f" (payer claim number {payment.payer_claim[:38]})" if payment.payer_claim else "")
           + f" at CLP segment {payment.position}")
    if claim is None:
        return Unprocessable(f"{who} pays {payment.paid:.2f} but names no Claim this server sent "
                             f"to {payer_ref}: store the Claim it names (CLP01 is its id, "
                             "its insurer must be the payer) or correct it, then retry",
                             code="not-found")
    if payment.unbalanced:
        return Unprocessable(f"{who} does not balance: {payment.unbalanced}. Ask the payer "
                             "for a corrected 835 (or post it by hand and cancel this Task)",
                             code="business-rule")
    if payment.status == REVERSAL and claim_outcome(previous) is not ClaimOutcome.COMPLETE:
        return Unprocessable(f"{who} reverses a payment, but Claim/{str(claim['id'])[:64]} has "
                             "no posted payment to reverse: post the 835 that paid it first, "
                             "then retry", code="business-rule")
    return None


def _patient(claim: Resource | None) -> str | None:
    return local_patient(((claim or {}).get("patient") or {}).get("reference"))


def first_task(*, document_id: str, payment: ClaimPayment, claim: Resource | None,
               error: FhirError) -> Resource:
    """The Task of a claim payment the import sets aside, committed with the posting (the
    835's DocumentReference is new in that commit: it has no Task yet)."""
    return new_task(step=STEP, focus=f"DocumentReference/{document_id}", item=item_of(payment),
                    patient=_patient(claim),
                    failure=Failure(reason=error.diagnostics, outcome=error.outcome()))


async def set_aside(*, repo: Repository, settings: Settings, document_id: str,
                    payment: ClaimPayment, claim: Resource | None,
                    error: FhirError) -> Resource:
    """The claim payment still cannot be posted: open (or update) its Task. Returns the
    Task."""
    return await open_task(repo=repo, settings=settings, step=STEP,
                           focus=f"DocumentReference/{document_id}", item=item_of(payment),
                           patient=_patient(claim),
                           failure=Failure(reason=error.diagnostics, outcome=error.outcome()))


def warning(error: FhirError, task: Resource) -> Issue:
    """What the caller of the import is told about a claim payment set aside."""
    return Issue(error.code, f"{error.diagnostics[:300]}. Not posted: it waits on the "
                 f"worklist as Task/{task['id']} ({STEP})", "warning")


async def posted(*, repo: Repository, settings: Settings, document_id: str,
                 payment: ClaimPayment, response_id: str) -> None:
    """The claim payment is posted: its open Task, if any, is completed."""
    await complete_task(repo=repo, settings=settings, step=STEP,
                        focus=f"DocumentReference/{document_id}", item=item_of(payment),
                        results=[f"ClaimResponse/{response_id}"])


def unbalanced_of(error: BaseException) -> Unbalanced | None:
    """The BPR02 imbalance an import refused the 835 for, if that is why."""
    cause = error.__cause__
    return cause if isinstance(cause, Unbalanced) else None


def file_problem(unbalanced: Unbalanced) -> Unprocessable:
    """Why a whole 835 cannot be posted, in plain words: identifiers and amounts only."""
    return Unprocessable(
        f"The 835 interchange ISA13 {unbalanced.interchange[:15] or 'unknown'} (transaction "
        f"ST02 {unbalanced.transaction[:15] or 'unknown'}) does not balance: BPR02 pays "
        f"{unbalanced.total:.2f}, but its claim payments (CLP04) less its provider "
        f"adjustments (PLB) total {unbalanced.expected:.2f}, which BPR02 must equal. Nothing "
        "of it is posted. Ask the payer for a corrected 835, or cancel this Task",
        code="business-rule")


def refused_file(error: FhirError, kind: str) -> FhirError:
    """Why a fetched file is applied in nothing (not valid X12, a payer or Claim this
    server does not know, ...), and what to do."""
    return Unprocessable(
        f"{error.diagnostics[:500].rstrip('. ')}. Nothing of this {kind} is applied: store or "
        "correct what this names and retry, ask the clearinghouse for a corrected file, or "
        "cancel this Task", code=error.code)


def file_document_id(text: str, kind: str = "835") -> str:
    """The kept file's DocumentReference id, from its content: one per file however often
    it is fetched."""
    digest = hashlib.sha256(text.encode("ascii", "replace")).hexdigest()[:48]
    return f"x12-{kind.lower()}-{digest}"


async def set_aside_file(*, repo: Repository, settings: Settings, text: str,
                         refused: FhirError, kind: str = "835") -> Resource:
    """Keep a file the poll could not apply as a whole, and open (or update) its Task
    saying why it was ``refused`` (``file_problem`` for a BPR02 that does not balance,
    else ``refused_file``). Returns the Task."""
    unbalanced = unbalanced_of(refused)
    error = file_problem(unbalanced) if unbalanced is not None else refused_file(refused, kind)
    interchange = unbalanced.interchange if unbalanced is not None else ""
    document_id = file_document_id(text, kind)
    focus = f"DocumentReference/{document_id}"
    failure = Failure(reason=error.diagnostics, outcome=error.outcome())
    if await repo.current(type_="DocumentReference", id_=document_id) is None:
        kept = interchange_document(Exchanged("received", kind, text, interchange), related=[])
        kept["id"] = document_id
        if "masterIdentifier" in kept:
            kept["masterIdentifier"]["value"] = (f"{kind}-{interchange}-"
                                                 f"{document_id.rsplit('-', 1)[1][:8]}")
        task = new_task(step=STEP, focus=focus, item=FILE_ITEM, patient=None, failure=failure)
        stored = await commit_new(repo, settings, [(kept, None), (task, None)])
        return stored[1]
    return await open_task(repo=repo, settings=settings, step=STEP, focus=focus,
                           item=FILE_ITEM, patient=None, failure=failure)


async def set_aside_unkept(*, repo: Repository, settings: Settings, endpoint: str,
                           file_id: str, error: FhirError) -> Resource:
    """A file too large to read is not kept: its Task names the clearinghouse's Endpoint
    (``focus``) and the file's id there (``item``). Returns the Task."""
    reason = (f"The file {file_id[:64]} fetched from {endpoint} was not read: "
              f"{error.diagnostics[:300].rstrip('. ')}. It is not kept: ask the "
              "clearinghouse to send it again in smaller files, then cancel this Task")
    return await open_task(repo=repo, settings=settings, step=STEP, focus=endpoint,
                           item=f"file:{file_id[:64]}", patient=None,
                           failure=Failure(reason=reason, outcome=error.outcome()))
