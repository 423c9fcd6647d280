"""What the revenue-cycle operations share: reading resources, following references,
finding a payer's endpoint, and packing resources to travel to another server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fhir_server.adapters.endpoints import endpoint_of
from fhir_server.adapters.payer import PayerEndpoint
from fhir_server.core.config import Settings
from fhir_server.core.errors import Conflict
from fhir_server.core.fhirjson import loads_stored
from fhir_server.revenue.records import Resolver, Resource, read_local
from fhir_server.service import interactions as svc
from fhir_server.service.validation import validate_resource
from fhir_server.storage.model import instant, now_ms
from fhir_server.storage.repository import Repository, TransactionConflict


def now_instant() -> str:
    return instant(now_ms())


def today() -> date:
    return datetime.now(UTC).date()


async def payer_endpoint(repo: Repository, organization: Resource | None) -> PayerEndpoint | None:
    """The endpoint of a payer Organization stored here, if it has an active one: a FHIR
    server (``hl7-fhir-rest``) or a clearinghouse taking X12 5010 (``x12-5010``)."""
    for reference in (organization or {}).get("endpoint") or []:
        local = (reference or {}).get("reference")
        found = endpoint_of(await read_local(repo, local), str(local))
        if found is not None:
            return found
    return None




def map_references(value: Any, mapping: dict[str, str]) -> Any:
    """``value`` with each reference in ``mapping`` replaced by its target, and every other
    reference dropped (keeping the Reference's identifier and display, if any); elements
    left empty are removed."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                if item in mapping:
                    out[key] = mapping[item]
                continue
            new = map_references(item, mapping)
            if new not in (None, {}, []):
                out[key] = new
        return out
    if isinstance(value, list):
        return [v for v in (map_references(i, mapping) for i in value) if v not in (None, {}, [])]
    return value


def pack(main: Resource, related: dict[str, Resource]) -> Resource:
    """``main`` ready to travel: every reference to a ``related`` resource (by its local
    ``Type/id``) points at a contained copy; references to anything else, which the
    receiver could not resolve, keep only their identifier and display."""
    names = {local: f"{related[local]['resourceType'].lower()}{n}"
             for n, local in enumerate(sorted(related), start=1)}
    to_contained = {local: f"#{name}" for local, name in names.items()}
    contained = []
    for local, resource in sorted(related.items()):
        body = {k: v for k, v in resource.items() if k not in ("id", "meta", "contained", "text",
                                                                 "endpoint")}
        contained.append({"resourceType": resource["resourceType"], "id": names[local],
                          **map_references(body, to_contained)})
    body = {k: v for k, v in main.items() if k not in ("id", "meta", "contained", "text")}
    return {"resourceType": main["resourceType"], "contained": contained,
            **map_references(body, to_contained)}


def answer_as_ours(answer: Resource, way: Route, fields: dict[str, dict[str, Any]]) -> Resource:
    """A payer's answer as this server stores it: ``fields`` (request, patient, insurer...)
    set to this server's references, each insurance naming this server's Coverage, the
    payer's id kept as an identifier (system: the payer's address), and every other
    reference, into the payer's own server, dropped."""
    assert way.endpoint is not None
    out = {k: v for k, v in answer.items() if k not in ("id", "meta", "text", "contained")}
    out.update(fields)
    kept = {str(r.get("reference")): str(r.get("reference")) for r in fields.values()}
    insurances = out.get("insurance")
    for insurance in insurances if isinstance(insurances, list) else []:
        if isinstance(insurance, dict) and way.coverage_local:
            insurance["coverage"] = {"reference": way.coverage_local}
            kept[way.coverage_local] = way.coverage_local
    if answer.get("id"):
        out["identifier"] = [*(out.get("identifier") or []),
                             {"system": way.endpoint.address, "value": str(answer["id"])[:64]}]
    mapped: Resource = map_references(out, kept)
    return mapped


def bundle_resources(bundle: Resource, type_: str) -> list[Resource]:
    """The resources of one type among a Bundle's entries (odd entries ignored)."""
    entries = bundle.get("entry")
    out = []
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == type_:
            out.append(resource)
    return out


def drop_ids(resource: Resource) -> Resource:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


async def commit_new(repo: Repository, settings: Settings,
                     resources: list[tuple[Resource, int | None]]) -> list[Resource]:
    """Write resources (with their ids; previous version or None) all or nothing."""
    ts = now_ms()
    writes = []
    for resource, previous in resources:
        validate_resource(resource, expected_type=resource["resourceType"],
                          max_depth=settings.fhir_max_json_depth)
        writes.append(svc.plan_write(settings=settings, resource=resource,
                                     type_=resource["resourceType"], id_=resource["id"],
                                     previous=previous,
                                     method="POST" if previous is None else "PUT", ts=ts))
    try:
        stored = await repo.commit_transaction(writes, ts=ts)
    except TransactionConflict:
        raise Conflict("A resource changed while this operation ran; nothing was written, "
                       "try again") from None
    return [loads_stored(s.text or "{}") for s in stored]


@dataclass
class Route:
    """Where a request about a Coverage goes: the payer Organization and its endpoint."""

    coverage: Resource | None
    coverage_local: str | None
    insurer: Resource | None
    insurer_local: str | None
    endpoint: PayerEndpoint | None


async def route(repo: Repository, resolver: Resolver, *, coverage_ref: Any,
                insurer_ref: Any) -> Route:
    """The request's insurer, or else its Coverage's payor; its FHIR endpoint if either
    Organization is stored here with one (then the payer answers, not this server)."""
    coverage, coverage_local = await resolver.get(coverage_ref, "Coverage")
    insurer, insurer_local = await resolver.get(insurer_ref, "Organization")
    payors = (coverage or {}).get("payor") or []
    payor, payor_local = (await resolver.get(payors[0], "Organization") if payors
                          else (None, None))
    for org, local in ((insurer, insurer_local), (payor, payor_local)):
        if local is not None:
            endpoint = await payer_endpoint(repo, org)
            if endpoint is not None:
                return Route(coverage, coverage_local, org, local, endpoint)
    if insurer is None:
        insurer, insurer_local = payor, payor_local
    return Route(coverage, coverage_local, insurer, insurer_local, None)
