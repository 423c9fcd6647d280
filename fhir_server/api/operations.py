"""Routes for the operations in ``fhir_server/operations/registry.py`` (``POST [base]/[type]/$op`` and
``POST [base]/[type]/[id]/$op``), registered before the generic interaction routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from fhir_server.adapters.payer import PayerAdapter
from fhir_server.api import path_types  # noqa: F401  (registers the opname convertor)
from fhir_server.api.deps import SettingsDep
from fhir_server.api.negotiation import json_response, pretty, read_body
from fhir_server.auth.enforce import authorize, request_access
from fhir_server.core.errors import Invalid, MethodNotAllowed, NotFound, Upstream, UpstreamTimeout
from fhir_server.core.models import check_id
from fhir_server.observability import business
from fhir_server.operations.base import Call, Operation, parameters_from_query, parse_parameters
from fhir_server.operations.registry import OPERATIONS
from fhir_server.search.extract import index_resource


@dataclass
class Services:
    """What operations use beyond the database: the adapters, one per app."""

    payer: PayerAdapter
    x12: Any  # adapters.payer_x12.X12PayerAdapter: the clearinghouse outbox poll
    ehr: Any = None  # adapters.ehr_fhir.FhirEhrAdapter


def x12_operations() -> frozenset[str]:
    """The last path segments (``$import-835``) of the operations whose input is an X12 file."""
    return frozenset(f"${op.code}" for op in OPERATIONS if op.text_body)


async def _run(op: Operation, request: Request, settings: Any,
               instance: tuple[str, str] | None) -> Response:
    """Check the caller's token for the operation, then run it on the whole database: an
    operation reads what it needs (the payer's member records, the price list) on the
    server's behalf, and checks what the caller gave it through ``Call.check``."""
    for type_, letter in op.requires:
        await authorize(request, type_=type_, interaction=letter)
    id_ = None
    if instance is not None:
        type_, id_ = instance
        await authorize(request, type_=type_, interaction="read", id_=id_)
    params = await _params(op, request)

    async def check(**kwargs: Any) -> Any:
        return await authorize(request, **kwargs)

    async def sees(type_: str, resource: dict[str, Any]) -> bool:
        access, _ = request_access(request)
        principal = access.principal
        if principal is None or principal.patient is None:
            return True  # user and system tokens: the operation's letters and role decide
        index = index_resource(resource, base_url=settings.base_url)
        return await access.admits(type_, "r", id_=str(resource.get("id", "")), index=index)

    call = Call(repo=request.app.state.repo, settings=settings,
                services=request.app.state.services, params=params, id_=id_,
                authorize=check, sees=sees)
    try:
        result = await op.run(call)
    except (Upstream, UpstreamTimeout):  # the payer or EHR did not answer
        business.operation_finished(op.id, None)
        raise
    finally:
        request.state.audit_patients = call.patients
    business.operation_finished(op.id, result)
    return json_response(result, pretty_print=pretty(request))


X12_MEDIA = "application/edi-x12"


async def _params(op: Operation, request: Request) -> dict[str, list[Any]]:
    """The operation's input: a GET request's query string, a Parameters (or resource)
    body, or for an operation that takes X12 text, an ``application/edi-x12`` body."""
    if request.method == "GET":
        return parse_parameters(op, parameters_from_query(op, request.query_params.multi_items()))
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if op.text_body and media == X12_MEDIA:
        try:
            return {op.text_body: [(await request.body()).decode("ascii")]}
        except UnicodeDecodeError:
            raise Invalid("X12 text must be ASCII") from None
    body = await read_body(request) if await request.body() else None
    return parse_parameters(op, body)


def _type_route(op: Operation):  # type: ignore[no-untyped-def]
    async def route(request: Request, settings: SettingsDep) -> Response:
        return await _run(op, request, settings, None)
    return route


def _instance_route(op: Operation, type_: str):  # type: ignore[no-untyped-def]
    async def route(id_: str, request: Request, settings: SettingsDep) -> Response:
        check_id(id_)
        return await _run(op, request, settings, (type_, id_))
    return route


def _definition_route(op: Operation):  # type: ignore[no-untyped-def]
    definition = op.definition()  # built with the routes, at start-up

    async def route(request: Request) -> Response:
        return json_response(definition, pretty_print=pretty(request))
    return route


def build_router() -> APIRouter:
    """The operations' routes, and their OperationDefinitions, served as generated (like
    HAPI's: not stored, so a database holds only what its users wrote). An operation that
    changes nothing can also be invoked with GET, its parameters in the query string."""
    router = APIRouter()
    for op in OPERATIONS:
        router.add_api_route(f"/OperationDefinition/{op.id}", _definition_route(op),
                             methods=["GET"], name=f"{op.id}-definition")
        methods = ["POST"] if op.affects_state else ["GET", "POST"]
        for type_ in op.resource:
            if op.type_level:
                router.add_api_route(f"/{type_}/${op.code}", _type_route(op), methods=methods,
                                     name=f"{op.id}-type-{type_}")
            if op.instance:
                router.add_api_route(f"/{type_}/{{id_}}/${op.code}", _instance_route(op, type_),
                                     methods=methods, name=f"{op.id}-instance-{type_}")
    # A GET of an operation that only POST may invoke, or of none: said as such, rather
    # than read as a resource id or a compartment's type by the interaction routes.
    router.add_api_route("/{type_}/{name:opname}", get_of_type_operation, methods=["GET"])
    router.add_api_route("/{type_}/{id_}/{name:opname}", get_of_instance_operation,
                         methods=["GET"])
    return router


def _offered(type_: str, name: str, level: str) -> Operation | None:
    for op in OPERATIONS:
        if f"${op.code}" == name and type_ in op.resource and (
                op.type_level if level == "type-level" else op.instance):
            return op
    return None


def _get_refused(type_: str, name: str, level: str) -> Response:
    if _offered(type_, name, level) is not None:  # offered for POST only: it changes data
        raise MethodNotAllowed(f"{name} changes data: invoke it with POST",
                               headers={"Allow": "POST"})
    return _unknown(type_, name, level)


async def get_of_type_operation(type_: str, name: str) -> Response:
    return _get_refused(type_, name, "type-level")


async def get_of_instance_operation(type_: str, id_: str, name: str) -> Response:
    return _get_refused(type_, name, "instance")


unknown = APIRouter()  # included after the interaction routes


def _unknown(type_: str, name: str, level: str) -> Response:
    if not name.startswith("$"):
        raise MethodNotAllowed("POST is not allowed here", code="not-supported")
    raise NotFound(f"{type_[:64]} has no {level} operation '{name[:64]}' on this server",
                   code="not-supported")


@unknown.post("/{type_}/{name}")
async def unknown_type_operation(type_: str, name: str) -> Response:
    return _unknown(type_, name, "type-level")


@unknown.post("/{type_}/{id_}/{name}")
async def unknown_instance_operation(type_: str, id_: str, name: str) -> Response:
    return _unknown(type_, name, "instance")
