"""Routes for the RESTful interactions. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from fhir_server.api import history as hist
from fhir_server.api import path_types  # noqa: F401  (registers the URL convertors)
from fhir_server.api.deps import RepoDep, SettingsDep
from fhir_server.api.negotiation import JSON_TYPES, max_depth, max_string, read_body
from fhir_server.api.params import criteria, criteria_from_header
from fhir_server.api.responses import (
    info_outcome,
    not_modified,
    resource_response,
    write_response,
)
from fhir_server.api.search import search_response
from fhir_server.core.errors import Invalid, UnsupportedMediaType
from fhir_server.core.fhirjson import parse_json
from fhir_server.core.models import check_id, require_type
from fhir_server.service import interactions as svc
from fhir_server.service.patch import JSON_PATCH, apply_fhirpath_patch, apply_json_patch
from fhir_server.storage.model import StoredVersion

router = APIRouter()


def _if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    return None if value is None else svc.parse_etag(value)


@router.get("/_history")
async def system_history(request: Request, repo: RepoDep, settings: SettingsDep) -> Response:
    return await hist.history_response(request, repo=repo, settings=settings)


@router.get("/{type_}/_history")
async def type_history(type_: str, request: Request, repo: RepoDep,
                       settings: SettingsDep) -> Response:
    return await hist.history_response(request, repo=repo, settings=settings, type_=type_)


@router.get("/{type_}/{id_}/_history")
async def instance_history(type_: str, id_: str, request: Request, repo: RepoDep,
                           settings: SettingsDep) -> Response:
    return await hist.history_response(request, repo=repo, settings=settings, type_=type_,
                                       id_=id_)


@router.get("/{type_}/{id_}/_history/{vid}")
async def vread(type_: str, id_: str, vid: str, request: Request, repo: RepoDep,
                settings: SettingsDep) -> Response:
    stored = await svc.vread(repo=repo, type_=type_, id_=id_, version=vid)
    return resource_response(request, stored, settings.base_url)


@router.get("/{compartment}/{id_}/{type_}")
async def compartment_search(compartment: str, id_: str, type_: str, request: Request,
                             repo: RepoDep, settings: SettingsDep) -> Response:
    check_id(id_)
    require_type(compartment)
    return await search_response(request, repo=repo, settings=settings, type_=type_,
                                 params=list(request.query_params.multi_items()),
                                 compartment=(compartment, id_))


@router.get("/{type_}/{id_}")
async def read(type_: str, id_: str, request: Request, repo: RepoDep,
               settings: SettingsDep) -> Response:
    stored = await svc.read(repo=repo, type_=type_, id_=id_)
    if not_modified(request, stored):
        return Response(status_code=304, headers={"ETag": stored.etag})
    return resource_response(request, stored, settings.base_url)


@router.get("/{type_}")
async def search(type_: str, request: Request, repo: RepoDep, settings: SettingsDep) -> Response:
    params = list(request.query_params.multi_items())
    return await search_response(request, repo=repo, settings=settings, type_=type_,
                                 params=params)


@router.post("/{type_}/_search")
async def search_post(type_: str, request: Request, repo: RepoDep,
                      settings: SettingsDep) -> Response:
    form = await request.form()
    params = [*request.query_params.multi_items(),
              *((k, v) for k, v in form.multi_items() if isinstance(v, str))]
    return await search_response(request, repo=repo, settings=settings, type_=type_,
                                 params=params)


@router.post("/{type_}")
async def create(type_: str, request: Request, repo: RepoDep, settings: SettingsDep) -> Response:
    header = request.headers.get("if-none-exist")
    written = await svc.create(
        repo=repo, settings=settings, type_=type_, resource=await read_body(request),
        if_none_exist=None if header is None else criteria_from_header(header))
    return write_response(request, written, settings.base_url)


@router.put("/{type_}/{id_}")
async def update(type_: str, id_: str, request: Request, repo: RepoDep,
                 settings: SettingsDep) -> Response:
    written = await svc.update(repo=repo, settings=settings, type_=type_, id_=id_,
                               resource=await read_body(request), if_match=_if_match(request))
    return write_response(request, written, settings.base_url)


@router.put("/{type_}")
async def conditional_update(type_: str, request: Request, repo: RepoDep,
                             settings: SettingsDep) -> Response:
    written = await svc.conditional_update(
        repo=repo, settings=settings, type_=type_, criteria=criteria(request),
        resource=await read_body(request), if_match=_if_match(request))
    return write_response(request, written, settings.base_url)


@router.delete("/{type_}/{id_}")
async def delete(type_: str, id_: str, request: Request, repo: RepoDep,
                 settings: SettingsDep) -> Response:
    stored = await svc.delete(repo=repo, settings=settings, type_=type_, id_=id_,
                             if_match=_if_match(request))
    return _deleted(request, stored, nothing=f"{type_}/{id_} was already deleted")


@router.delete("/{type_}")
async def conditional_delete(type_: str, request: Request, repo: RepoDep,
                             settings: SettingsDep) -> Response:
    stored = await svc.conditional_delete(repo=repo, settings=settings, type_=type_,
                                          criteria=criteria(request))
    return _deleted(request, stored,
                    nothing="No resource matched the criteria; nothing was deleted")


def _deleted(request: Request, stored: StoredVersion | None, *, nothing: str) -> Response:
    """A delete's answer: the deletion version, or what made it a no-op."""
    if stored is None:
        return info_outcome(request, nothing)
    return info_outcome(request, f"Deleted {stored.reference} (version {stored.version})",
                        headers={"ETag": stored.etag})


async def _patcher(request: Request):  # type: ignore[no-untyped-def]
    """The patch function a PATCH request's body describes (JSON Patch or FHIRPath Patch)."""
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    body = parse_json(await request.body(), max_depth=max_depth(request),
                      max_string=max_string(request))
    if media == JSON_PATCH:
        return lambda resource: apply_json_patch(resource, body)
    if media in JSON_TYPES:
        if not isinstance(body, dict):
            raise Invalid("A FHIRPath Patch body is a Parameters resource", code="structure")
        return lambda resource: apply_fhirpath_patch(resource, body)
    raise UnsupportedMediaType(f"PATCH takes {JSON_PATCH} or a FHIRPath Patch "
                               "(application/fhir+json Parameters)")


@router.patch("/{type_}/{id_}")
async def patch(type_: str, id_: str, request: Request, repo: RepoDep,
                settings: SettingsDep) -> Response:
    require_type(type_)
    written = await svc.patch(repo=repo, settings=settings, type_=type_, id_=id_,
                              apply=await _patcher(request), if_match=_if_match(request))
    return write_response(request, written, settings.base_url)


@router.patch("/{type_}")
async def conditional_patch(type_: str, request: Request, repo: RepoDep,
                            settings: SettingsDep) -> Response:
    written = await svc.conditional_patch(
        repo=repo, settings=settings, type_=type_, criteria=criteria(request),
        apply=await _patcher(request), if_match=_if_match(request))
    return write_response(request, written, settings.base_url)


# The hot interactions again, their type and id constrained to what FHIR allows
# (api/path_types.py), so that main.py can put them before the operations' many routes
# (matching walks the routes in order: read by id was the 60th). They cannot shadow an
# operation or an OperationDefinition; anything they do not match (an invalid id, which
# answers 400) falls through to the routes above, in their order.
hot_router = APIRouter()
hot_router.add_api_route("/{type_:fhirtype}/{id_:fhirid}", read, methods=["GET"])
hot_router.add_api_route("/{type_:fhirtype}", search, methods=["GET"])
hot_router.add_api_route("/{type_:fhirtype}", create, methods=["POST"])
hot_router.add_api_route("/{type_:fhirtype}/{id_:fhirid}", update, methods=["PUT"])
