"""Type-level search (``_id`` and ``identifier`` until the full search engine lands)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.bundles import link, searchset_bundle
from fhir_server.api.negotiation import json_response, pretty
from fhir_server.api.params import count_param
from fhir_server.config import Settings
from fhir_server.errors import Invalid
from fhir_server.fhirjson import loads_stored
from fhir_server.search.basic import compile_query
from fhir_server.storage.repository import Repository
from fhir_server.subsetting import parse_elements, parse_summary, subset
from fhir_server.validation import require_type

PAGING = "_offset"


async def search_response(request: Request, *, repo: Repository, settings: Settings,
                          type_: str, params: list[tuple[str, str]]) -> Response:
    require_type(type_)
    count = count_param(request, settings)
    offset_raw = dict(params).get(PAGING, "0")
    if not offset_raw.isdigit():
        raise Invalid("_offset must be a whole number", expression=[PAGING])
    offset = int(offset_raw)
    summary = parse_summary(dict(params).get("_summary"))
    elements = parse_elements(dict(params).get("_elements"))
    criteria = [(k, v) for k, v in params if k != PAGING]
    query = compile_query(type_, criteria)
    matches, total = await repo.search(type_=type_, query=query, skip=offset,
                                       limit=0 if summary == "count" else count,
                                       count_total=True)
    if summary == "count":
        matches = []
    kept = [(k, v) for k, v in criteria]
    links = {"self": link(settings.base_url, type_, [*kept, *(
        [(PAGING, str(offset))] if offset else [])])}
    if total is not None and offset + count < total and summary != "count":
        links["next"] = link(settings.base_url, type_, [*kept, (PAGING, str(offset + count))])
    if offset:
        links["previous"] = link(settings.base_url, type_,
                                 [*kept, (PAGING, str(max(0, offset - count)))])
    bundle = searchset_bundle(base_url=settings.base_url, matches=matches[:count], total=total,
                              links=links)
    if summary not in (None, "false", "count") or elements:
        bundle["entry"] = [
            {**e, "resource": subset(loads_stored(m.text or "{}"), summary=summary,
                                     elements=elements)}
            for e, m in zip(bundle["entry"], matches, strict=True)
        ]
    return json_response(bundle, pretty_print=pretty(request))
