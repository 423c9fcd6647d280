"""History interactions: instance, type and system, with _since, _at, _count and paging."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.bundles import decode_cursor, encode_cursor, history_bundle, link
from fhir_server.api.negotiation import json_response, pretty
from fhir_server.api.params import at_param, count_param, since_param
from fhir_server.auth.scoped import ScopedRepository
from fhir_server.core.config import Settings
from fhir_server.core.errors import Invalid, NotFound
from fhir_server.core.models import check_id, require_type
from fhir_server.storage.repository import Repository

HISTORY_PARAMETERS = frozenset({"_count", "_since", "_at", "_cursor", "_format", "_pretty"})


async def history_response(request: Request, *, repo: Repository, settings: Settings,
                           type_: str | None = None, id_: str | None = None) -> Response:
    if type_ is not None:
        require_type(type_)
    if id_ is not None:
        check_id(id_)
    for name in request.query_params:
        if name not in HISTORY_PARAMETERS:
            raise Invalid(f"Parameter '{name[:64]}' is not supported on history",
                          expression=[name[:64]])
    if id_ is not None and isinstance(repo, ScopedRepository) and \
            not await repo.readable(type_=type_ or "", id_=id_, letter="s"):
        raise NotFound(f"{type_}/{id_} is not known")  # outside the token's terms: as absent
    count = count_param(request, settings)
    raw_cursor = request.query_params.get("_cursor")
    page = await repo.history(
        type_=type_, id_=id_, since=since_param(request), at=at_param(request), count=count,
        cursor=None if raw_cursor is None else decode_cursor(raw_cursor))
    if (id_ is not None and page.total == 0 and raw_cursor is None
            and await repo.peek(type_=type_ or "", id_=id_) is None):
        raise NotFound(f"{type_}/{id_} is not known")
    path = "/".join(p for p in (type_, id_, "_history") if p)
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
    links = {"self": link(settings.base_url, path, request.query_params.multi_items())}
    if raw_cursor is not None:
        links["first"] = link(settings.base_url, path, kept)
    if page.next_cursor is not None:
        links["next"] = link(settings.base_url, path,
                             [*kept, ("_cursor", encode_cursor(page.next_cursor))])
    bundle = history_bundle(base_url=settings.base_url, versions=page.versions,
                            total=page.total, links=links)
    return json_response(bundle, pretty_print=pretty(request))
