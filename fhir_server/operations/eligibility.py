"""Eligibility: ``CoverageEligibilityRequest/$submit`` and ``Coverage/[id]/$eligibility``.

The request is stored, then answered: by the payer's FHIR endpoint when the
Coverage's payor Organization has one (the request travels with its patient,
coverage and insurer contained), otherwise by this server as the payer
(``fhir_server/revenue/payer/eligibility.py``). The answer is stored with ``request`` pointing at
the stored request, and returned.
"""

from __future__ import annotations

import uuid

from fhir_server.core.errors import Invalid, NotFound, Unprocessable, Upstream
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.operations.common import (
    Route,
    answer_as_ours,
    bundle_resources,
    commit_new,
    drop_ids,
    now_instant,
    pack,
    route,
    today,
)
from fhir_server.operations.interchanges import documents
from fhir_server.operations.payer_side import check_subject, visible_member
from fhir_server.revenue.coverage import focal_coverage_ref
from fhir_server.revenue.payer.eligibility import DEFAULT_PURPOSE, eligibility_answer
from fhir_server.revenue.payer.members import service_date
from fhir_server.revenue.records import Resolver, Resource
from fhir_server.service import interactions as svc
from fhir_server.service.validation import validate_resource


async def submit_request(call: Call, request: Resource, bundle: Resource | None = None
                         ) -> Resource:
    validate_resource(request, expected_type="CoverageEligibilityRequest",
                      max_depth=call.settings.fhir_max_json_depth)
    await call.check(type_="CoverageEligibilityRequest", interaction="create", resource=request)
    repo, settings = call.repo, call.settings
    request = {**drop_ids(request), "id": str(uuid.uuid4())}
    request_ref = f"CoverageEligibilityRequest/{request['id']}"
    resolver = Resolver(repo, settings, request, bundle)
    way = await route(repo, resolver, coverage_ref=focal_coverage_ref(request),
                      insurer_ref=request.get("insurer"))
    patient, patient_local = await check_subject(
        call, resolver, request.get("patient"), way, where="CoverageEligibilityRequest")
    if way.endpoint is not None:
        related = {k: v for k, v in ((patient_local, patient), (way.coverage_local, way.coverage),
                                     (way.insurer_local, way.insurer)) if k and v}
        for reference, types in ((request.get("provider"), ("Organization", "Practitioner")),
                                 ((way.coverage or {}).get("subscriber"),
                                  ("Patient", "RelatedPerson"))):
            for type_ in types:
                found, local = await resolver.get(reference, type_)
                if found is not None and local:
                    related[local] = found
        outbound = {**drop_ids(request), "insurer": {"reference": way.insurer_local}}
        answer = await call.services.payer.check_eligibility(way.endpoint,
                                                             pack(outbound, related))
        response = _as_ours(answer.resource, request, request_ref, way,
                            max_depth=call.settings.fhir_max_json_depth)
        exchanged = answer.exchanged
    else:
        response = await answer_as_payer(call, request, request_ref, resolver)
        exchanged = []
    response["id"] = str(uuid.uuid4())
    # The request, its answer and the interchanges are written together: no request is
    # left unanswered, and none without what travelled.
    kept = documents(exchanged, related=[request_ref, f"CoverageEligibilityResponse/"
                                         f"{response['id']}"], subject=patient_local)
    _, stored, *_ = await commit_new(repo, settings, [(request, None), (response, None), *kept])
    return stored


def _as_ours(answer: Resource, request: Resource, request_ref: str, way: Route, *,
             max_depth: int) -> Resource:
    """The payer's answer, with its references mapped to this server's resources."""
    assert way.endpoint is not None
    mapped = answer_as_ours(answer, way, {
        "request": {"reference": request_ref}, "patient": request["patient"],
        "insurer": {"reference": way.insurer_local} if way.insurer_local
        else request["insurer"]})
    try:
        validate_resource(mapped, expected_type="CoverageEligibilityResponse", max_depth=max_depth)
    except Invalid:
        raise Upstream(f"The payer at {way.endpoint.reference} answered with an invalid "
                       "CoverageEligibilityResponse") from None
    return mapped


async def answer_as_payer(call: Call, request: Resource, request_ref: str,
                          resolver: Resolver) -> Resource:
    coverage = focal_coverage_ref(request)
    member = await visible_member(call, resolver, coverage)
    submitted, _ = await resolver.get(coverage, "Coverage")
    return eligibility_answer(request=request, request_ref=request_ref, member=member,
                              submitted_coverage=submitted,
                              on=service_date(request, fallback=today()),
                              currency=call.settings.fhir_billing_currency)


async def run_submit(call: Call) -> Resource:
    body = call.one("resource")
    if body.get("resourceType") == "Bundle":
        requests = bundle_resources(body, "CoverageEligibilityRequest")
        if len(requests) != 1:
            raise Unprocessable("The Bundle must hold exactly one CoverageEligibilityRequest",
                                expression=["Bundle.entry"])
        return await submit_request(call, requests[0], bundle=body)
    if body.get("resourceType") != "CoverageEligibilityRequest":
        raise Unprocessable("$submit takes a CoverageEligibilityRequest (or a Bundle holding one)",
                            expression=["resourceType"])
    return await submit_request(call, body)


async def run_coverage_eligibility(call: Call) -> Resource:
    _, coverage = await svc.current_resource(call.repo, "Coverage", call.id_ or "")
    if coverage is None:
        raise NotFound(f"Coverage/{call.id_} is not known")
    payors = [p for p in coverage.get("payor") or []
              if str((p or {}).get("reference", "")).startswith("Organization/")]
    if not payors:
        raise Unprocessable("The Coverage's payor must be an Organization on this server",
                            expression=["Coverage.payor"])
    request: Resource = {
        "resourceType": "CoverageEligibilityRequest", "status": "active",
        "purpose": call.params.get("purpose") or DEFAULT_PURPOSE,
        "patient": coverage["beneficiary"],
        "servicedDate": call.one("serviced") or today().isoformat(),
        "created": now_instant(), "insurer": {"reference": payors[0]["reference"]},
        "insurance": [{"focal": True, "coverage": {"reference": f"Coverage/{coverage['id']}"}}],
    }
    if call.settings.fhir_billing_provider:
        request["provider"] = {"reference": call.settings.fhir_billing_provider}
    return await submit_request(call, request)


SUBMIT = Operation(
    id="CoverageEligibilityRequest-submit", code="submit",
    title="Submit an eligibility request",
    description="Stores the CoverageEligibilityRequest and answers it with a stored "
    "CoverageEligibilityResponse: from the payer's FHIR endpoint when the Coverage's payor "
    "Organization has one, else from this server's own Coverage records (this server as payer).",
    resource=("CoverageEligibilityRequest",), type_level=True, instance=False,
    resource_body="resource", requires=(("CoverageEligibilityRequest", "c"),),
    parameters=(
        Param("resource", "in", 1, "1", "Resource",
              "The CoverageEligibilityRequest, or a Bundle holding it and what it references"),
        Param("return", "out", 1, "1", "CoverageEligibilityResponse", "The stored answer"),
    ),
    run=run_submit)

COVERAGE_ELIGIBILITY = Operation(
    id="Coverage-eligibility", code="eligibility", title="Check a Coverage's eligibility",
    description="Builds a CoverageEligibilityRequest from the Coverage (beneficiary, payor) and "
    "submits it as CoverageEligibilityRequest/$submit does.",
    resource=("Coverage",), type_level=False, instance=True,
    requires=(("Coverage", "r"), ("CoverageEligibilityRequest", "c")),
    parameters=(
        Param("serviced", "in", 0, "1", "date", "The date of service (default: today)"),
        Param("purpose", "in", 0, "*", "code",
              "auth-requirements | benefits | discovery | validation (default: validation, "
              "benefits)"),
        Param("return", "out", 1, "1", "CoverageEligibilityResponse", "The stored answer"),
    ),
    run=run_coverage_eligibility)
