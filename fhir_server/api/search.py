"""Search routes' shared handler: request -> run_search -> searchset Bundle."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.bundles import link, searchset_bundle
from fhir_server.api.negotiation import json_response, pretty
from fhir_server.core.config import Settings
from fhir_server.core.errors import operation_outcome
from fhir_server.core.fhirjson import loads_stored
from fhir_server.service.search.engine import SearchRequest, SearchResult, parse_request, run_search
from fhir_server.service.subsetting import subset
from fhir_server.storage.repository import Repository


def handling_lenient(request: Request) -> bool:
    for part in request.headers.get("prefer", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "handling":
            return value.strip().lower() == "lenient"
    return False


def _result_params(req: SearchRequest) -> list[tuple[str, str]]:
    out = [("_count", str(req.count))]
    if req.sort_param:
        out.append(("_sort", req.sort_param))
    if req.total_mode != "accurate":
        out.append(("_total", req.total_mode))
    return out + req.passthrough


def _links(settings: Settings, path: str, req: SearchRequest, result: SearchResult
           ) -> dict[str, str]:
    result_params = _result_params(req)
    links = {"self": link(settings.base_url, path, [*result.used, *result_params,
                                                    *([("_offset", str(req.offset))]
                                                      if req.offset else [])])}
    if result.page_id is not None:
        paging = [("_page", result.page_id), *result_params]
        links["first"] = link(settings.base_url, path, [*paging, ("_offset", "0")])
        if result.has_next:
            links["next"] = link(settings.base_url, path,
                                 [*paging, ("_offset", str(req.offset + req.count))])
        if req.offset > 0:
            links["previous"] = link(settings.base_url, path,
                                     [*paging, ("_offset", str(max(0, req.offset - req.count)))])
    return links


def _subset_entries(bundle: dict[str, Any], req: SearchRequest, result: SearchResult) -> None:
    """_summary and _elements apply to the matches (the first entries)."""
    if req.summary in (None, "false", "count") and not req.elements:
        return
    for entry, stored in zip(bundle["entry"], result.matches, strict=False):
        entry["resource"] = subset(loads_stored(stored.text or "{}"), summary=req.summary,
                                   elements=req.elements)


async def search_response(request: Request, *, repo: Repository, settings: Settings,
                          type_: str, params: list[tuple[str, str]],
                          compartment: tuple[str, str] | None = None) -> Response:
    lenient = handling_lenient(request)
    req = parse_request(type_, params, settings, lenient=lenient, compartment=compartment)
    result = await run_search(repo=repo, settings=settings, req=req)
    path = type_ if compartment is None else f"{compartment[0]}/{compartment[1]}/{type_}"
    bundle = searchset_bundle(base_url=settings.base_url, matches=result.matches,
                              included=result.included, total=result.total,
                              links=_links(settings, path, req, result))
    _subset_entries(bundle, req, result)
    if result.issues:
        bundle["entry"].append({"resource": operation_outcome(result.issues),
                                "search": {"mode": "outcome"}})
    return json_response(bundle, pretty_print=pretty(request))
