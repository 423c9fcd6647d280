"""``Claim/$submit``: a claim goes to its payer and comes back adjudicated.

The Claim (or a Bundle holding one and what it references) is stored, then:

* when the focal Coverage's payor Organization has a FHIR endpoint, the FHIR payer
  adapter sends it there (patient, coverage, insurer and provider contained) and the
  ClaimResponse that comes back is stored with its references mapped to this server;
* otherwise this server adjudicates it as the payer (``fhir_server/revenue/payer/``).

A Claim that already has a complete ClaimResponse is not adjudicated twice: the
existing answer is returned (on the payer side, a resubmitted Claim is recognised by
its identifiers). A claim its payer did not take is kept and waits on the worklist as a
submit-claim Task until it is answered (``submit_claim_step.py``); sent again (by its
id, or by its identifiers and content), it is the same Claim.

Afterwards the bill's Invoice (``urn:fhir-rcm-server:invoice`` identifier of the Claim)
shows the insurer's and the patient's shares as ``informational``
``totalPriceComponent``s (codes ``insurer`` and ``patient`` of
``https://fhir-rcm-server.org/CodeSystem/invoice-share``) and becomes ``balanced`` when
the patient owes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fhir_server.core.errors import Conflict, Invalid, NotFound, Unprocessable, Upstream
from fhir_server.core.money import decimal_of
from fhir_server.observability import business
from fhir_server.operations import submit_claim_step as step
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.operations.common import (
    Route,
    answer_as_ours,
    bundle_resources,
    commit_new,
    drop_ids,
    pack,
    route,
)
from fhir_server.operations.interchanges import documents
from fhir_server.operations.payer_side import check_subject, visible_member
from fhir_server.revenue.balances import adjudication_posting, currency_of, post
from fhir_server.revenue.billing import bill_of
from fhir_server.revenue.cob import earlier_insurance
from fhir_server.revenue.corrections import frequency_of, replaced_claim_ref
from fhir_server.revenue.coverage import focal_coverage_ref, focal_insurance
from fhir_server.revenue.payer.claims import adjudicate_claim
from fhir_server.revenue.payer.members import Member
from fhir_server.revenue.records import LOCAL_REF, Resolver, Resource
from fhir_server.revenue.states import ClaimOutcome, claim_outcome, transition
from fhir_server.service import interactions as svc
from fhir_server.service.criteria import search_token
from fhir_server.service.validation import validate_resource
from fhir_server.storage.locks import LockBusy
from fhir_server.terminology.systems import CLAIM_CONTROL, SERVER_URI


async def run(call: Call) -> Resource:
    body = call.one("resource")
    bundle = None
    if body.get("resourceType") == "Bundle":
        claims = bundle_resources(body, "Claim")
        if len(claims) != 1:
            raise Unprocessable("The Bundle must hold exactly one Claim",
                                expression=["Bundle.entry"])
        body, bundle = claims[0], body
    if body.get("resourceType") != "Claim":
        raise Unprocessable("$submit takes a Claim (or a Bundle holding one)",
                            expression=["resourceType"])
    validate_resource(body, expected_type="Claim", max_depth=call.settings.fhir_max_json_depth)
    await call.check(type_="Claim", interaction="create", resource=body)
    submission = await _identify(call, body)
    if submission.earlier is not None:
        await step.answered(repo=call.repo, settings=call.settings,
                            claim_id=submission.claim["id"], response_id=submission.earlier["id"])
        return submission.earlier
    response = await _submit(call, submission, bundle)
    await step.answered(repo=call.repo, settings=call.settings, claim_id=submission.claim["id"],
                        response_id=response["id"])
    return response


async def _submit(call: Call, submission: Submission, bundle: Resource | None) -> Resource:
    """The claim to its payer, or adjudicated here; its answer written."""
    claim = submission.claim
    claim_ref = f"Claim/{claim['id']}"
    resolver = Resolver(call.repo, call.settings, claim, bundle)
    way = await route(call.repo, resolver, coverage_ref=focal_coverage_ref(claim),
                      insurer_ref=claim.get("insurer"))
    await check_subject(call, resolver, claim.get("patient"), way, where="Claim")
    if way.endpoint is not None:
        # An X12 claim's 277CA can come back before its answer is written: the poll waits
        # on this lease (fhir_server/operations/remittance_posting.py).
        lease = [f"x12-claim:{claim['id']}"] if way.endpoint.partner is not None else []
        try:
            async with call.repo.locks.hold(lease):
                return await _send(call, submission, resolver, claim, claim_ref, way)
        except LockBusy:
            raise Conflict("This claim is being sent by another request; try again") from None
        except step.PAYER_FAILURES as error:  # kept, and on the worklist until answered
            await step.failed(repo=call.repo, settings=call.settings, claim=claim,
                              store=submission.store, previous=submission.previous,
                              error=error, endpoint_ref=way.endpoint.reference)
            raise
    member = await visible_member(call, resolver, focal_coverage_ref(claim))
    lease = [f"deductible:{member.reference}"] if member.reference else []
    try:
        # One adjudication per member Coverage at a time: the year's deductible is shared.
        async with call.repo.locks.hold(lease):
            response = await adjudicate_as_payer(call, claim, claim_ref, resolver, member)
            return await _commit(call, submission, response)
    except LockBusy:
        raise Conflict("Another claim of this member is being adjudicated; try again") from None


async def _send(call: Call, submission: Submission, resolver: Resolver, claim: Resource,
                claim_ref: str, way: Route) -> Resource:
    """The claim to its payer's endpoint; its answer (and the X12 exchanged) written."""
    assert way.endpoint is not None
    related = await related_resources(resolver, claim, way)
    # The payer is sent the insurance it is billed for (the focal one, whose Coverage travels
    # contained) after those of the payers that answered before it, with their answers; the
    # Coverages after it are this clinic's to coordinate.
    insurance = [*earlier_insurance(claim), *filter(None, [focal_insurance(claim)])]
    outbound = {**drop_ids(claim), "insurer": {"reference": way.insurer_local},
                "insurance": [{**entry, "sequence": n} for n, entry in enumerate(insurance, 1)]}
    if way.endpoint.partner is not None:  # X12: CLM01, echoed by the 277CA and the 835
        outbound["identifier"] = [*(claim.get("identifier") or []),
                                  {"system": CLAIM_CONTROL, "value": claim["id"]}]
    answer = await call.services.payer.submit_claim(way.endpoint, pack(outbound, related))
    response = _as_ours(answer.resource, claim, claim_ref, way,
                        call.settings.fhir_billing_currency,
                        max_depth=call.settings.fhir_max_json_depth)
    if not answer.exchanged:
        return await _commit(call, submission, response)
    # X12: the claim's one ClaimResponse, updated later by the 277CA and the 835.
    response["id"] = claim_response_id(claim["id"])
    version, earlier = await svc.current_resource(call.repo, "ClaimResponse", response["id"])
    return await _commit(call, submission, response, previous=(earlier, version),
                         kept=documents(answer.exchanged, related=[
                             claim_ref, f"ClaimResponse/{response['id']}"],
                             subject=claim["patient"].get("reference")))


@dataclass(frozen=True)
class Submission:
    """The Claim to submit, whether to store it (new, or a changed version of a stored one,
    replacing ``previous``), and an earlier complete answer if it was adjudicated already."""

    claim: Resource
    store: bool
    previous: int | None = None
    earlier: Resource | None = None


async def _commit(call: Call, submission: Submission, response: Resource, *,
                  previous: tuple[Resource | None, int | None] | None = None,
                  kept: list[tuple[Resource, int | None]] | None = None) -> Resource:
    """Write the Claim (when new or changed), its ClaimResponse, the interchanges that
    travelled and the bill's Invoice update together: a claim is never left stored without
    its answer. ``previous``: the ClaimResponse this one replaces (content, version)."""
    earlier, version = previous if previous is not None else (None, None)
    outcome = claim_outcome(response)
    if outcome is not None:  # else not a ClaimResponse the validation lets through
        response["outcome"] = transition("ClaimResponse", (earlier or {}).get("outcome"),
                                         outcome)
    if previous is None:
        response["id"] = str(uuid.uuid4())
        earlier = await complete_response(call, f"Claim/{submission.claim['id']}")
        replaced = replaced_claim_ref(submission.claim)
        if earlier is None and replaced is not None:
            # A correction's answer settles the Invoice in place of the claim it corrects.
            earlier = await complete_response(call, replaced)
    writes: list[tuple[Resource, int | None]] = []
    if submission.store:
        writes.append((submission.claim, submission.previous))
    answer_at = len(writes)
    writes.append((response, version))
    writes += kept or []
    bill = await bill_of(call.repo, submission.claim)
    if bill is not None:
        invoice, invoice_version = bill
        currency = currency_of(invoice, call.settings.fhir_billing_currency)
        writes.append((post(invoice, adjudication_posting(response, earlier), currency),
                       invoice_version))
    stored = await commit_new(call.repo, call.settings, writes)
    business.claim_answered(response)
    return stored[answer_at]


def claim_response_id(claim_id: str) -> str:
    """The id of a claim's ClaimResponse when its payer is reached in X12 (one per claim)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{SERVER_URI}/ClaimResponse/Claim/{claim_id}"))


async def related_resources(resolver: Resolver, claim: Resource, way: Route
                            ) -> dict[str, Resource]:
    """What the Claim references on this server, to travel contained: the patient, the
    provider, the coverage (and its subscriber), the insurer, the care team, the diagnoses'
    Conditions, the items' Encounters and their Locations."""
    related: dict[str, Resource] = {}

    async def add(reference: Any, *types: str) -> Resource | None:
        for type_ in types:
            resource, local = await resolver.get(reference, type_)
            if resource is not None and local:
                related[local] = resource
                return resource
        return None

    await add(claim.get("patient"), "Patient")
    await add(claim.get("provider"), "Organization", "Practitioner")
    for entry in earlier_insurance(claim):  # the payers before this one, and their answers
        coverage = await add(entry.get("coverage"), "Coverage")
        for payor in (coverage or {}).get("payor") or []:
            await add(payor, "Organization")
        answer = await add(entry.get("claimResponse"), "ClaimResponse")
        await add((answer or {}).get("insurer"), "Organization")
    for local, resource in ((way.coverage_local, way.coverage),
                            (way.insurer_local, way.insurer)):
        if local and resource is not None:
            related[local] = resource
    await add((way.coverage or {}).get("subscriber"), "Patient", "RelatedPerson")
    for member in claim.get("careTeam") or []:
        await add((member or {}).get("provider"), "Practitioner", "Organization")
    for diagnosis in claim.get("diagnosis") or []:
        await add((diagnosis or {}).get("diagnosisReference"), "Condition")
    for item in claim.get("item") or []:
        for reference in (item or {}).get("encounter") or []:
            encounter = await add(reference, "Encounter")
            for place in (encounter or {}).get("location") or []:
                await add((place or {}).get("location"), "Location")
    return related


async def _identify(call: Call, body: Resource) -> Submission:
    id_ = body.get("id")
    if id_ is not None:
        version, existing = await svc.current_resource(call.repo, "Claim", str(id_))
        if existing is not None and not await call.may_see("Claim", existing):
            raise NotFound(f"Claim/{str(id_)[:64]} is not known")
        if existing is not None:
            if drop_ids(existing) == drop_ids(body):
                return Submission(existing, store=False,
                                  earlier=await complete_response(call, f"Claim/{id_}"))
            # Submitting a changed Claim updates it: the caller needs that right.
            await call.check(type_="Claim", interaction="update", id_=str(id_), resource=body)
            return Submission({**drop_ids(body), "id": str(id_)}, store=True, previous=version)
    # A claim sent again (a retry, or by another server that cannot know our ids) is
    # recognised by its identifiers and identical content.
    for identifier in body.get("identifier") or []:
        if not identifier.get("system") or not identifier.get("value"):
            continue
        same_id = await svc.find_resources(
            repo=call.repo, settings=call.settings, type_="Claim",
            criteria=[("identifier", search_token(identifier["system"], identifier["value"]))])
        for claim in same_id:
            if drop_ids(claim) == drop_ids(body) and await call.may_see("Claim", claim):
                earlier = await complete_response(call, f"Claim/{claim['id']}")
                if earlier is not None:
                    return Submission(claim, store=False, earlier=earlier)
                if await step.waiting(repo=call.repo, settings=call.settings,
                                      claim_id=claim["id"]):  # sent again as itself
                    return Submission(claim, store=False)
        break
    return Submission({**drop_ids(body), "id": str(uuid.uuid4())}, store=True)


async def complete_response(call: Call, claim_ref: str) -> Resource | None:
    found = await svc.find_resources(repo=call.repo, settings=call.settings,
                                     type_="ClaimResponse",
                                     criteria=[("request", claim_ref),
                                               ("outcome", f"{ClaimOutcome.COMPLETE},"
                                                           f"{ClaimOutcome.QUEUED}")], limit=1)
    return found[0] if found else None


def _as_ours(answer: Resource, claim: Resource, claim_ref: str, way: Route,
             currency: str, *, max_depth: int) -> Resource:
    assert way.endpoint is not None
    fields = {"request": {"reference": claim_ref}, "patient": claim["patient"]}
    if way.insurer_local:
        fields["insurer"] = {"reference": way.insurer_local}
    if claim.get("provider"):
        fields["requestor"] = claim["provider"]
    mapped = answer_as_ours(answer, way, fields)
    problem = None
    try:
        validate_resource(mapped, expected_type="ClaimResponse", max_depth=max_depth)
        amount = (mapped.get("payment") or {}).get("amount")
        if amount is not None:
            if amount.get("currency", currency) != currency:
                problem = f"a payment in {str(amount.get('currency'))[:8]}, not {currency}"
            elif decimal_of(amount.get("value", 0)) < 0:
                problem = "a negative payment"
    except (Invalid, Unprocessable):
        problem = "an invalid ClaimResponse"
    if problem:
        raise Upstream(f"The payer at {way.endpoint.reference} answered with {problem}")
    return mapped


async def adjudicate_as_payer(call: Call, claim: Resource, claim_ref: str,
                              resolver: Resolver, member: Member) -> Resource:
    submitted, _ = await resolver.get(focal_coverage_ref(claim), "Coverage")
    earlier = [answer for entry in earlier_insurance(claim)
               if (answer := (await resolver.get(entry["claimResponse"], "ClaimResponse"))[0])]
    return await adjudicate_claim(repo=call.repo, settings=call.settings, claim=claim,
                                  claim_ref=claim_ref, member=member,
                                  submitted_coverage=submitted, earlier=earlier,
                                  replaced=await _replaced_answer(call, claim))


async def _replaced_answer(call: Call, claim: Resource) -> Resource | None:
    """This server as payer: its own answer to the claim a correction replaces or voids,
    named by its id in ``related.reference`` (what this server answered with), or, when the
    clinic is this same server, the answer to the Claim ``related`` names."""
    if frequency_of(claim) == "1":
        return None
    for related in claim.get("related") or []:
        value = str((related.get("reference") or {}).get("value", ""))
        if LOCAL_REF.match(f"ClaimResponse/{value}"):
            _, answer = await svc.current_resource(call.repo, "ClaimResponse", value)
            if answer is not None:
                return answer
    replaced = replaced_claim_ref(claim)
    return await complete_response(call, replaced) if replaced else None


CLAIM_SUBMIT = Operation(
    id="Claim-submit", code="submit", title="Submit a claim",
    description="Stores the Claim and sends it to its payer (the FHIR endpoint of the focal "
    "Coverage's payor Organization), or adjudicates it here when this server is the payer; "
    "stores and returns the ClaimResponse, and updates the bill's Invoice with the insurer's "
    "and the patient's shares.",
    resource=("Claim",), type_level=True, instance=False, resource_body="resource",
    requires=(("Claim", "c"),),
    base="http://hl7.org/fhir/OperationDefinition/Claim-submit",
    parameters=(
        Param("resource", "in", 1, "1", "Resource", "The Claim, or a Bundle holding it"),
        Param("return", "out", 1, "1", "ClaimResponse", "The stored ClaimResponse"),
    ),
    run=run)
