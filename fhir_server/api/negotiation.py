"""Content negotiation: JSON only, ``_format``, ``_pretty``, ``Prefer``, body parsing."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.core.errors import Invalid, NotAcceptable, UnsupportedMediaType
from fhir_server.core.fhirjson import dumps, parse_resource

FHIR_JSON = "application/fhir+json"
JSON_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir", "text/json"})
XML_TYPES = frozenset({"application/fhir+xml", "application/xml", "application/xml+fhir",
                       "text/xml", "xml"})
FORMAT_ALIASES = {"json": FHIR_JSON, "application/json": FHIR_JSON, FHIR_JSON: FHIR_JSON,
                  "application/json+fhir": FHIR_JSON, "text/json": FHIR_JSON}
MEDIA_TYPE = f"{FHIR_JSON}; charset=utf-8"
OFFLOAD_BYTES = 256 * 1024  # bodies at least this large are parsed in a worker thread


def _media(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


async def check_accept(request: Request) -> None:
    """406 unless the client accepts FHIR JSON (``_format`` wins over ``Accept``)."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if _media(fmt) in FORMAT_ALIASES:
            return
        raise NotAcceptable(
            f"_format '{fmt[:64]}' is not supported; this server serves FHIR JSON only",
            expression=["_format"])
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return
    kinds = [_media(part) for part in accept.split(",")]
    acceptable = JSON_TYPES | {"*/*", "application/*", "text/*", ""}
    if any(k in acceptable for k in kinds):
        return
    raise NotAcceptable(f"Cannot produce '{accept[:80]}'; this server serves {FHIR_JSON} only")


async def read_body(request: Request) -> dict[str, Any]:
    """The request's resource, after checking its media type."""
    ctype = request.headers.get("content-type")
    if ctype is not None:
        media = _media(ctype)
        if media in XML_TYPES or media.endswith("+xml"):
            raise UnsupportedMediaType("XML is not supported; send application/fhir+json")
        if media and media not in JSON_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type '{media[:64]}' is not supported; send application/fhir+json")
    body = await request.body()
    limits = {"max_depth": max_depth(request), "max_string": max_string(request)}
    if len(body) >= OFFLOAD_BYTES:  # the nesting check walks every value: not on the event loop
        return await asyncio.to_thread(parse_resource, body, **limits)
    return parse_resource(body, **limits)


def max_depth(request: Request) -> int:
    """The nesting limit of JSON bodies (FHIR_MAX_JSON_DEPTH)."""
    return int(request.app.state.settings.fhir_max_json_depth)


def max_string(request: Request) -> int:
    """The longest string element of JSON bodies, UTF-8 bytes (FHIR_MAX_STRING_BYTES)."""
    return int(request.app.state.settings.fhir_max_string_bytes)


def pretty(request: Request) -> bool:
    value = request.query_params.get("_pretty")
    if value is None:
        return False
    if value not in {"true", "false"}:
        raise Invalid("_pretty must be true or false", expression=["_pretty"])
    return value == "true"


def prefer_return(request: Request) -> str:
    """'minimal', 'representation' (default) or 'OperationOutcome'."""
    for part in request.headers.get("prefer", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "return":
            value = value.strip().strip('"')
            if value in {"minimal", "representation", "OperationOutcome"}:
                return value
    return "representation"


def json_response(content: Any, *, status: int = 200, headers: dict[str, str] | None = None,
                  pretty_print: bool = False) -> Response:
    return Response(dumps(content, pretty=pretty_print), status_code=status,
                    headers=headers, media_type=MEDIA_TYPE)


def raw_response(body: bytes, *, status: int = 200,
                 headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def fhir_response_for_error(status: int, outcome: dict[str, Any],
                            headers: dict[str, str]) -> Response:
    return json_response(outcome, status=status, headers=headers)
