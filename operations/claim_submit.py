"""``Claim/$submit``: a claim goes to its payer and comes back adjudicated.

The Claim (or a Bundle holding one and what it references) is stored, then:

* when the focal Coverage's payor Organization has a FHIR endpoint, the FHIR payer
  adapter sends it there (patient, coverage, insurer and provider contained) and the
  ClaimResponse that comes back is stored with its references mapped to this server;
* otherwise this server adjudicates it as the payer (``operations/adjudication.py``).

A Claim that already has a complete ClaimResponse is not adjudicated twice: the
existing answer is returned (on the payer side, a resubmitted Claim is recognised by
its identifiers). Afterwards the bill's Invoice (``urn:fhir-rcm-server:invoice``
identifier of the Claim) shows the insurer's and the patient's shares as
``informational`` ``totalPriceComponent``s (codes ``insurer`` and ``patient`` of
``https://fhir-rcm-server.org/CodeSystem/invoice-share``) and becomes ``balanced``
when the patient owes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server import interactions as svc
from fhir_server.errors import Conflict, Unprocessable
from fhir_server.fhirjson import loads_stored
from fhir_server.storage.locks import LockBusy
from fhir_server.validation import validate_resource
from operations.adjudication import adjudicate, deductible_met, plan_rules
from operations.base import Call, Operation, Param
from operations.common import (
    Resolver,
    Resource,
    decimal_of,
    keep_local_references,
    money,
    now_instant,
    pack,
    payer_endpoint,
    read_local,
    ref,
    today,
)
from operations.generate_bill import token
from operations.payer_side import (
    Member,
    beneficiary_ref,
    coverage_ref,
    error_code,
    find_member,
    in_force,
    service_date,
)
from terminology.systems import BILL_INVOICE, INVOICE_SHARE, PAYMENT_TYPE


def _focal(claim: Resource) -> dict[str, Any]:
    insurance = [i for i in claim.get("insurance") or [] if isinstance(i, dict)]
    return next((i for i in insurance if i.get("focal")), insurance[0] if insurance else {})


async def run(call: Call) -> Resource:
    body = call.one("resource")
    bundle = None
    if body.get("resourceType") == "Bundle":
        claims = [e.get("resource") for e in body.get("entry") or []
                  if (e.get("resource") or {}).get("resourceType") == "Claim"]
        if len(claims) != 1:
            raise Unprocessable("The Bundle must hold exactly one Claim",
                                expression=["Bundle.entry"])
        body, bundle = claims[0], body
    if body.get("resourceType") != "Claim":
        raise Unprocessable("$submit takes a Claim (or a Bundle holding one)",
                            expression=["resourceType"])
    validate_resource(body, expected_type="Claim")
    claim, earlier = await _store_claim(call, body)
    if earlier is not None:
        return earlier
    claim_ref = f"Claim/{claim['id']}"
    resolver = Resolver(call.repo, call.settings, claim, bundle)
    coverage, coverage_local = await resolver.get(_focal(claim).get("coverage"))
    insurer, insurer_local = await resolver.get(claim.get("insurer"))
    if insurer is None and coverage is not None and coverage.get("payor"):
        insurer, insurer_local = await resolver.get(coverage["payor"][0])
    endpoint = await payer_endpoint(call.repo, insurer) if insurer_local else None
    if endpoint is not None:
        related: dict[str, Resource] = {}
        for reference in (claim.get("patient"), claim.get("provider")):
            resource, local = await resolver.get(reference)
            if resource is not None and local:
                related[local] = resource
        for local, resource in ((coverage_local, coverage), (insurer_local, insurer)):
            if local and resource is not None:
                related[local] = resource
        answer = await call.services.payer.submit_claim(endpoint, pack(claim, related))
        response = _as_ours(answer, claim, claim_ref, endpoint.address, insurer_local,
                            coverage_local)
        validate_resource(response, expected_type="ClaimResponse")
        written = await svc.create(repo=call.repo, settings=call.settings, type_="ClaimResponse",
                                   resource=response)
        stored = loads_stored(written.stored.text or "{}")
    else:
        stored = await adjudicate_as_payer(call, claim, claim_ref, resolver)
    await settle_invoice(call, claim, stored)
    return stored


async def _store_claim(call: Call, body: Resource) -> tuple[Resource, Resource | None]:
    """(the stored Claim, an earlier complete answer to it if there is one)."""
    id_ = body.get("id")
    existing = await read_local(call.repo, f"Claim/{id_}") if id_ else None
    if existing is not None:
        earlier = await _complete_response(call, f"Claim/{id_}")
        if earlier is not None:
            return existing, earlier
        if _content(existing) != _content(body):
            written = await svc.update(repo=call.repo, settings=call.settings, type_="Claim",
                                       id_=str(id_), resource=body)
            return loads_stored(written.stored.text or "{}"), None
        return existing, None
    for identifier in body.get("identifier") or []:
        if not identifier.get("system") or not identifier.get("value"):
            continue
        same = await svc.find_resources(repo=call.repo, settings=call.settings, type_="Claim",
                                        criteria=[("identifier", token(identifier["system"],
                                                                       identifier["value"]))])
        for claim in same:
            earlier = await _complete_response(call, f"Claim/{claim['id']}")
            if earlier is not None:
                return claim, earlier
    fresh = {k: v for k, v in body.items() if k not in ("id", "meta")}
    written = await svc.create(repo=call.repo, settings=call.settings, type_="Claim",
                               resource=fresh)
    return loads_stored(written.stored.text or "{}"), None


def _content(resource: Resource) -> Resource:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


async def _complete_response(call: Call, claim_ref: str) -> Resource | None:
    found = await svc.find_resources(repo=call.repo, settings=call.settings,
                                     type_="ClaimResponse",
                                     criteria=[("request", claim_ref), ("outcome", "complete")],
                                     limit=1)
    return found[0] if found else None


def _as_ours(answer: Resource, claim: Resource, claim_ref: str, address: str,
             insurer_local: str | None, coverage_local: str | None) -> Resource:
    out = {k: v for k, v in answer.items() if k not in ("id", "meta", "text", "contained")}
    out["request"] = {"reference": claim_ref}
    out["patient"] = claim["patient"]
    allowed = {claim_ref, str(claim["patient"].get("reference"))}
    if insurer_local:
        out["insurer"] = {"reference": insurer_local}
        allowed.add(insurer_local)
    if claim.get("provider"):
        out["requestor"] = claim["provider"]
        allowed.add(str(claim["provider"].get("reference")))
    for insurance in out.get("insurance") or []:
        if coverage_local:
            insurance["coverage"] = {"reference": coverage_local}
            allowed.add(coverage_local)
    if answer.get("id"):
        out["identifier"] = [*(out.get("identifier") or []),
                             {"system": address, "value": str(answer["id"])}]
    return keep_local_references(out, allowed)


async def adjudicate_as_payer(call: Call, claim: Resource, claim_ref: str,
                              resolver: Resolver) -> Resource:
    member = await find_member(call.repo, call.settings, resolver, _focal(claim).get("coverage"))
    submitted, _ = await resolver.get(_focal(claim).get("coverage"))
    items = claim.get("item") or []
    on = service_date(items[0] if items else claim, fallback=today())
    if items and on == today():
        on = service_date(claim, fallback=on)
    currency = call.settings.fhir_billing_currency
    response: Resource = {
        "resourceType": "ClaimResponse", "status": "active", "type": claim["type"],
        "use": claim["use"], "patient": beneficiary_ref(member, claim.get("patient")),
        "created": now_instant(),
        "insurer": ref(member.payer) if member.payer else {"display": "Payer"},
        "request": {"reference": claim_ref},
        "insurance": [{"sequence": 1, "focal": True,
                       "coverage": coverage_ref(member, submitted)}],
    }
    provider = (claim.get("provider") or {}).get("reference")
    if isinstance(provider, str) and not provider.startswith("#"):
        response["requestor"] = {"reference": provider}
    errors = _errors(member, on, items)
    if errors:
        response.update(outcome="error", disposition="Claim not adjudicated", error=errors)
        return await _store_response(call, response)
    assert member.coverage is not None
    coverage = member.coverage
    rules = await plan_rules(call.repo, call.settings, coverage)
    member_ref = f"Coverage/{coverage['id']}"
    insurer_ref = None if member.payer is None else f"Organization/{member.payer['id']}"
    try:
        # One adjudication per member Coverage at a time: the year's deductible is shared.
        async with call.repo.locks.hold([f"deductible:{member_ref}"]):
            met = await deductible_met(call.repo, call.settings, member_ref, insurer_ref, on.year)
            result = adjudicate(claim, rules, deductible_left=max(Decimal(0),
                                                                  rules.deductible - met),
                                currency=currency)
            response.update(
                outcome="complete", disposition="Claim settled as per contract",
                item=result.items, total=result.totals,
                payment={"type": {"coding": [{"system": PAYMENT_TYPE, "code": "complete"}]},
                         "date": today().isoformat(),
                         "amount": money(result.benefit, currency)})
            return await _store_response(call, response)
    except LockBusy:
        raise Conflict("Another claim of this member is being adjudicated; try again") from None


def _errors(member: Member, on: Any, items: list[Any]) -> list[dict[str, Any]]:
    if member.coverage is None:
        return [error_code("member-not-found", "Member not found")]
    if not in_force(member.coverage, on):
        return [error_code("coverage-not-in-force", "Coverage not in force on the service date")]
    if not items:
        return [error_code("no-items", "The claim has no items")]
    return []


async def _store_response(call: Call, response: Resource) -> Resource:
    validate_resource(response, expected_type="ClaimResponse")
    written = await svc.create(repo=call.repo, settings=call.settings, type_="ClaimResponse",
                               resource=response)
    return loads_stored(written.stored.text or "{}")


async def settle_invoice(call: Call, claim: Resource, response: Resource) -> None:
    """Show the insurer's and the patient's shares on the bill's Invoice."""
    invoice_ref = next((i.get("value") for i in claim.get("identifier") or []
                        if i.get("system") == BILL_INVOICE), None)
    invoice = await read_local(call.repo, invoice_ref)
    if invoice is None or invoice.get("status") not in ("issued", "balanced"):
        return
    gross = decimal_of((invoice.get("totalGross") or {}).get("value", 0))
    currency = (invoice.get("totalGross") or {}).get("currency",
                                                      call.settings.fhir_billing_currency)
    paid = Decimal(0)
    if response.get("outcome") == "complete":
        paid = min(gross, decimal_of(((response.get("payment") or {}).get("amount") or {})
                                     .get("value", 0)))
    owed = gross - paid
    kept = [c for c in invoice.get("totalPriceComponent") or []
            if not any(x.get("system") == INVOICE_SHARE
                       for x in (c.get("code") or {}).get("coding") or [])]
    shares = [{"type": "informational",
               "code": {"coding": [{"system": INVOICE_SHARE, "code": code, "display": display}]},
               "amount": money(amount, currency)}
              for code, display, amount in (("insurer", "Insurer pays", paid),
                                            ("patient", "Patient owes", owed))]
    updated = {**invoice, "totalPriceComponent": [*kept, *shares],
               "status": "balanced" if owed <= 0 else "issued"}
    await svc.update(repo=call.repo, settings=call.settings, type_="Invoice",
                     id_=str(invoice["id"]), resource=updated)


CLAIM_SUBMIT = Operation(
    id="Claim-submit", code="submit", title="Submit a claim",
    description="Stores the Claim and sends it to its payer (the FHIR endpoint of the focal "
    "Coverage's payor Organization), or adjudicates it here when this server is the payer; "
    "stores and returns the ClaimResponse, and updates the bill's Invoice with the insurer's "
    "and the patient's shares.",
    resource=("Claim",), type_level=True, instance=False, resource_body="resource",
    base="http://hl7.org/fhir/OperationDefinition/Claim-submit",
    parameters=(
        Param("resource", "in", 1, "1", "Resource", "The Claim, or a Bundle holding it"),
        Param("return", "out", 1, "1", "ClaimResponse", "The stored ClaimResponse"),
    ),
    run=run)
