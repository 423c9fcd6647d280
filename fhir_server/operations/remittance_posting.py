"""Applying X12 files that come back from payers: 835 remittances and 277CA acknowledgements.

Every file is read whole and checked before anything is written: the envelope (control
numbers, counts), the implementation guide's map (pyx12), and for an 835 its balancing
rules and its payer, which must be one Organization on this server (matched by the
``N1*PR`` payer id, ``REF*2U`` or ``TRN03`` against Organization identifiers). Bad X12
answers 400 naming the segment and position, a payer no Organization matches 422.

An 835 posts, per check/EFT (``BPR``/``TRN``), in one all-or-nothing commit: a
PaymentReconciliation (identifier ``urn:fhir-rcm-server:x12-trn`` = payer|TRN02, which makes
the same 835 applied twice change nothing) with a ``detail`` per claim and per ``PLB``
adjustment; per CLP whose CLP01 is a Claim of this server billed to that payer, the claim's
ClaimResponse and the bill's Invoice balance; the 835 itself as a DocumentReference.
A CLP that cannot be posted (for a claim this server never sent to that payer, or whose
amounts do not balance) is kept as an unallocated detail, reported as a warning and set
aside on the worklist as a post-remittance Task (``post_remittance_step.py``); the other
CLPs are posted. A BPR whose total does not match its CLPs is refused whole (400); the
X12 poll keeps such a file and opens a post-remittance Task for it
(``post_remittance_step.set_aside_file``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from fhir_server.adapters.payer import Exchanged
from fhir_server.adapters.x12.acks import ClaimStatus, read_277ca
from fhir_server.adapters.x12.remittance import ClaimPayment, Remittance, Unbalanced, read_835
from fhir_server.adapters.x12.segments import Interchange, X12Error, parse, split
from fhir_server.adapters.x12.validate import validate
from fhir_server.core.config import Settings
from fhir_server.core.errors import (
    Conflict,
    FhirError,
    Invalid,
    Issue,
    PayloadTooLarge,
    Unprocessable,
)
from fhir_server.core.fhirjson import loads_stored
from fhir_server.core.money import money
from fhir_server.operations import post_remittance_step as step
from fhir_server.operations.claim_submit import claim_response_id
from fhir_server.operations.common import commit_new, now_instant
from fhir_server.operations.hand_payments import match, unmatched
from fhir_server.operations.interchanges import interchange_document
from fhir_server.operations.remittance_claims import claim_response, x12_date
from fhir_server.revenue.balances import adjudication_posting, currency_of, post
from fhir_server.revenue.billing import bill_invoice_id, bill_of
from fhir_server.revenue.records import Resource
from fhir_server.revenue.states import (
    ClaimOutcome,
    PaymentReconciliationStatus,
    claim_outcome,
    transition,
)
from fhir_server.service import interactions as svc
from fhir_server.service.criteria import search_token
from fhir_server.storage.locks import LockBusy
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import (
    ADJUDICATION_ERROR,
    CLAIM_CONTROL,
    PAYER_CLAIM_NUMBER,
    PAYMENT_KIND,
    REMITTANCE_TRACE,
    X12_CLAIM_STATUS,
    X12_CLAIM_STATUS_CATEGORY,
    X12_PLB_REASON,
)

MAX_PROBLEMS = 20


@dataclass
class Applied:
    """What applying a file did: the resources written and what the caller should know."""

    written: list[Resource] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)


def check_size(text: str, settings: Settings) -> None:
    """413 for an X12 file larger than FHIR_MAX_X12_BYTES, before anything reads it."""
    size = len(text) if text.isascii() else len(text.encode())
    if size > settings.fhir_max_x12_bytes:
        raise PayloadTooLarge(f"The X12 file is {size} bytes; this server reads files of at "
                              f"most {settings.fhir_max_x12_bytes} (FHIR_MAX_X12_BYTES)",
                              code="too-long")


def read_checked(text: str, expected: set[str], settings: Settings) -> Interchange:
    """The interchange, once its size, envelope, map and transaction types are right
    (413, 400 else)."""
    check_size(text, settings)
    try:
        document = parse(text)
    except X12Error as error:
        raise Invalid(f"Bad X12 at {error.where}: {error.message}") from None
    kinds = {t.set_id for t in document.transactions()}
    if not kinds or not kinds <= expected:
        raise Invalid(f"Expected {' or '.join(sorted(expected))} transaction sets, not "
                      f"{', '.join(sorted(k[:3] for k in kinds)) or 'none'}")
    report = validate(text)
    if not report.valid:
        problems = report.problems[:MAX_PROBLEMS]
        raise Invalid(f"The interchange does not follow its 5010 implementation guide: "
                      f"{problems[0].where}: {problems[0].description}",
                      extra_issues=[Issue("structure", f"{p.where}: {p.description} "
                                          f"(code {p.code})") for p in problems[1:]])
    return document


async def apply_835(*, repo: Repository, settings: Settings, text: str) -> Applied:
    document = read_checked(text, {"835"}, settings)
    try:
        remittances = read_835(document)
    except Unbalanced as error:  # the poll keeps such a file on the worklist: its cause
        raise Invalid(f"Bad 835 at {error.where}: {error.message}") from error
    except X12Error as error:
        raise Invalid(f"Bad 835 at {error.where}: {error.message}") from None
    payers = [await _payer(repo, settings, r) for r in remittances]
    applied = Applied()
    for remittance, payer in zip(remittances, payers, strict=True):
        key = f"{payer['id']}|{remittance.trace}"
        try:
            async with repo.locks.hold([f"remittance:{key}"]):
                await _post(repo, settings, remittance, payer, key, text, document, applied)
        except LockBusy:
            raise Conflict("This remittance is being posted by another request; try "
                           "again") from None
    return applied


async def _payer(repo: Repository, settings: Settings, remittance: Remittance) -> Resource:
    found: dict[str, Resource] = {}
    for value in dict.fromkeys(v for v in remittance.payer_ids if v):
        for org in await svc.find_resources(repo=repo, settings=settings, type_="Organization",
                                            criteria=[("identifier", search_token(None, value))],
                                            limit=5):
            found[org["id"]] = org
        if found:
            break
    if len(found) != 1:
        raise Unprocessable(f"{'No' if not found else 'More than one'} Organization on this "
                            "server matches the 835's payer (N1*PR N104, REF*2U or TRN03)",
                            code="not-found" if not found else "multiple-matches")
    return next(iter(found.values()))


async def _post(repo: Repository, settings: Settings, remittance: Remittance, payer: Resource,
                key: str, text: str, document: Interchange, applied: Applied) -> None:
    earlier = await svc.find_resources(repo=repo, settings=settings,
                                       type_="PaymentReconciliation",
                                       criteria=[("identifier", search_token(REMITTANCE_TRACE,
                                                                             key))], limit=1)
    if earlier:
        applied.issues.append(Issue("informational", f"The remittance with trace number "
                                    f"{remittance.trace[:50]} was applied before; nothing "
                                    "changed", "information"))
        applied.written += earlier
        return
    payer_ref = f"Organization/{payer['id']}"
    currency = settings.fhir_billing_currency
    claims = {c["id"]: c for c in await _claims(repo, remittance) if _billed_to(c, payer_ref)}
    ids = [claim_response_id(cid) for cid in claims]
    current: dict[str, tuple[int | None, Resource | None]] = {
        stored.id_: (stored.version, loads_stored(stored.text or "{}"))
        for stored in await repo.fetch(type_="ClaimResponse", ids=ids)}
    writes: list[tuple[Resource, int | None]] = []
    invoices: dict[str, tuple[Resource, int]] = {}
    details: list[dict[str, Any]] = []
    aside: list[tuple[ClaimPayment, Resource | None, FhirError]] = []
    reconciliation_id = str(uuid.uuid4())
    # Insurer payments recorded by hand on these claims' bills, and those this 835 matched.
    hand_recorded = await unmatched(repo, settings, invoice_ids=[
        i for c in claims.values() if (i := bill_invoice_id(c))], payer_ref=payer_ref)
    matched_ids: set[str] = set()
    for payment in remittance.claims:
        claim = claims.get(payment.control)
        detail: dict[str, Any] = {
            "type": {"coding": [{"system": PAYMENT_KIND, "code": "payment"}]},
            "amount": money(payment.paid, currency), "date": x12_date(remittance.paid_on),
            "identifier": {"system": CLAIM_CONTROL, "value": payment.control[:64]}}
        details.append(detail)
        response_id = claim_response_id(claim["id"]) if claim is not None else ""
        version, previous = current.get(response_id, (None, None))
        error = step.problem(payment, claim, payer_ref, previous)
        if error is not None:
            aside.append((payment, claim, error))
            continue
        assert claim is not None  # problem() answers an error for no claim
        response = claim_response(payment=payment, remittance=remittance, claim=claim,
                                  id_=response_id, payer_ref=payer_ref, currency=currency,
                                  previous=previous)
        writes.append((response, version))
        current[response_id] = (None, response)  # a second CLP for the claim replaces it
        detail.update(request={"reference": f"Claim/{claim['id']}"},
                      response={"reference": f"ClaimResponse/{response_id}"})
        bill = await bill_of(repo, claim)
        if bill is not None:
            # Two claims of one bill in the same 835 (a reversal of the original and the
            # payment of its correction): the second posts on the first's result.
            invoice, invoice_version = invoices.get(bill[0]["id"], bill)
            by_hand = [p for p in hand_recorded.get(invoice["id"], [])
                       if p["id"] not in matched_ids]
            posting, matched = match(adjudication_posting(response, previous), by_hand,
                                     response_id)
            matched_ids.update(p["id"] for p, _ in matched)
            writes += matched
            invoices[invoice["id"]] = (post(invoice, posting, currency_of(invoice, currency)),
                                       invoice_version)
    for adjustment in remittance.provider_adjustments:
        details.append({"type": {"coding": [{"system": PAYMENT_KIND, "code": "adjustment"},
                                            {"system": X12_PLB_REASON,
                                             "code": adjustment.reason}]},
                        "identifier": {"value": adjustment.reference or adjustment.reason},
                        "amount": money(-adjustment.amount, currency)})
    reconciliation = _reconciliation(reconciliation_id, remittance, payer_ref, key, details,
                                     currency)
    kept = interchange_document(Exchanged("received", "835", text, document.control),
                                related=[f"PaymentReconciliation/{reconciliation_id}"])
    # The CLPs set aside wait on the worklist: their Tasks are committed with the posting.
    tasks = [(step.first_task(document_id=kept["id"], payment=payment, claim=claim,
                              error=error), error) for payment, claim, error in aside]
    writes = [(reconciliation, None), (kept, None), *writes, *invoices.values(),
              *((task, None) for task, _ in tasks)]
    stored = await commit_new(repo, settings, _last_version_only(writes))
    applied.written.append(stored[0])
    applied.issues += [step.warning(error, task) for task, error in tasks]
    posted = sum(1 for d in details if "request" in d)
    applied.issues.append(Issue("informational", f"Remittance {remittance.trace[:50]}: "
                                f"{posted} claim payment(s) posted", "information"))


def _last_version_only(writes: list[tuple[Resource, int | None]]
                       ) -> list[tuple[Resource, int | None]]:
    """One write per resource: when an 835 pays a claim twice, the last content wins (with
    the version read first)."""
    by_key: dict[str, tuple[Resource, int | None]] = {}
    for resource, version in writes:
        key = f"{resource['resourceType']}/{resource['id']}"
        first = by_key.get(key)
        by_key[key] = (resource, first[1] if first is not None else version)
    return list(by_key.values())


async def _claims(repo: Repository, remittance: Remittance) -> list[Resource]:
    ids = [c.control for c in remittance.claims if 0 < len(c.control) <= 64]
    return [loads_stored(stored.text or "{}")
            for stored in await repo.fetch(type_="Claim", ids=list(dict.fromkeys(ids)))]


def _billed_to(claim: Resource, payer_ref: str) -> bool:
    return (claim.get("insurer") or {}).get("reference") == payer_ref


def _reconciliation(id_: str, remittance: Remittance, payer_ref: str, key: str,
                    details: list[dict[str, Any]], currency: str) -> Resource:
    total = remittance.total if remittance.credit else -remittance.total
    return {"resourceType": "PaymentReconciliation", "id": id_,
            "identifier": [{"system": REMITTANCE_TRACE, "value": key}],
            "status": transition("PaymentReconciliation", None, PaymentReconciliationStatus.ACTIVE),
            "created": now_instant(), "paymentIssuer": {"reference": payer_ref},
            "outcome": "complete",
            "disposition": f"835 remittance, {'EFT' if remittance.method == 'ACH' else 'check'}"
                           f" {remittance.trace[:50]}",
            "paymentDate": x12_date(remittance.paid_on), "paymentAmount": money(total, currency),
            "paymentIdentifier": {"value": remittance.trace},
            **({"detail": details} if details else {})}


async def apply_277ca(*, repo: Repository, settings: Settings, text: str) -> Applied:
    """A 277CA: rejected claims' ClaimResponses become ``error`` with the STC codes;
    accepted ones stay ``queued`` (noting the payer's claim number). Written together."""
    document = read_checked(text, {"277"}, settings)
    try:
        statuses = read_277ca(document)
    except X12Error as error:
        raise Invalid(f"Bad 277CA at {error.where}: {error.message}") from None
    claims = [f"x12-claim:{s.control}" for s in statuses if 0 < len(s.control) <= 64]
    try:
        # A fast clearinghouse's 277CA may arrive while $submit still writes the answer.
        async with repo.locks.hold(claims, wait=30.0):
            return await _apply_statuses(repo, settings, statuses, text, document)
    except LockBusy:
        raise Conflict("A claim of this 277CA is still being sent; try again") from None


async def _apply_statuses(repo: Repository, settings: Settings, statuses: list[ClaimStatus],
                          text: str, document: Interchange) -> Applied:
    applied = Applied()
    writes: list[tuple[Resource, int | None]] = []
    related = []
    for status in statuses:
        id_ = claim_response_id(status.control) if len(status.control) <= 64 else ""
        stored = await repo.current(type_="ClaimResponse", id_=id_) if id_ else None
        if stored is None or stored.text is None:
            applied.issues.append(Issue("not-found", f"TRN02 {status.control[:38]} (segment "
                                        f"{status.position}) is not a claim this server sent "
                                        "in X12", "warning"))
            continue
        response = loads_stored(stored.text)
        if claim_outcome(response) is ClaimOutcome.COMPLETE:
            continue  # already paid or denied by an 835: a late 277CA changes nothing
        codes = ", ".join(f"{c}:{s}" + (f":{e}" if e else "") for c, s, e in status.statuses)
        if status.rejected:
            response.update(outcome=transition("ClaimResponse", response.get("outcome"),
                                               ClaimOutcome.ERROR),
                            disposition="Rejected by the payer (277CA)",
                            error=[{"code": {"coding": [
                                {"system": ADJUDICATION_ERROR, "code": "x12-277ca-rejected",
                                 "display": "Rejected (277CA)"},
                                {"system": X12_CLAIM_STATUS_CATEGORY, "code": c},
                                *([{"system": X12_CLAIM_STATUS, "code": s}] if s else [])],
                                "text": f"277CA STC segment at {status.position}: status "
                                        f"{c}:{s}" + (f", entity {e}" if e else "")}}
                                for c, s, e in status.statuses if c])
        else:
            response["disposition"] = f"Accepted by the payer (277CA {codes[:60]})"
        if status.payer_claim:
            response["identifier"] = [{"system": PAYER_CLAIM_NUMBER,
                                       "value": status.payer_claim}]
        response.pop("meta", None)
        writes.append((response, stored.version))
        related.append(f"ClaimResponse/{response['id']}")
    kept = interchange_document(Exchanged("received", "277CA", text, document.control),
                                related=related[:100])
    applied.written = await commit_new(repo, settings, [*writes, (kept, None)])
    return applied


def file_kind(text: str) -> str:
    """What a fetched file is by its first transaction set: ``277CA``, else ``835``."""
    try:
        kind = next((s.get(1) for s in split(text) if s.id == "ST"), "")
    except X12Error:
        kind = ""
    return "277CA" if kind == "277" else "835"


async def apply_file(*, repo: Repository, settings: Settings, text: str) -> Applied:
    """An 835 or a 277CA, by its first transaction set."""
    check_size(text, settings)
    if file_kind(text) == "277CA":
        return await apply_277ca(repo=repo, settings=settings, text=text)
    return await apply_835(repo=repo, settings=settings, text=text)
