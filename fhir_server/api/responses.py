"""Turning stored versions into HTTP responses (read, write, subsetting, Prefer)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.bundles import version_headers
from fhir_server.api.negotiation import json_response, prefer_return, pretty, raw_response
from fhir_server.core.errors import Issue, operation_outcome
from fhir_server.core.fhirjson import loads_stored
from fhir_server.service.interactions import Written
from fhir_server.service.subsetting import parse_elements, parse_summary, subset
from fhir_server.storage.model import StoredVersion


def resource_response(request: Request, stored: StoredVersion, base_url: str, *,
                      status: int = 200, extra_headers: dict[str, str] | None = None) -> Response:
    """A stored resource as the body, honouring _pretty, _summary and _elements."""
    assert stored.text is not None
    headers = {**version_headers(stored, base_url), **(extra_headers or {})}
    summary = parse_summary(request.query_params.get("_summary"))
    elements = parse_elements(request.query_params.get("_elements"))
    is_pretty = pretty(request)
    if summary == "count":
        summary = None
    if summary in (None, "false") and not elements and not is_pretty:
        return raw_response(stored.text.encode(), status=status, headers=headers)
    body: dict[str, Any] = subset(loads_stored(stored.text), summary=summary, elements=elements)
    return json_response(body, status=status, headers=headers, pretty_print=is_pretty)


def etag_matches(tags: str | None, stored: StoredVersion) -> bool:
    """Whether an If-None-Match list (``W/"3", W/"4"`` or ``*``) names this version."""
    if not tags:
        return False
    wanted = {t.strip().removeprefix("W/") for t in tags.split(",")}
    return f'"{stored.version}"' in wanted or "*" in wanted


def not_modified(request: Request, stored: StoredVersion) -> bool:
    """Conditional read: If-None-Match names the current version."""
    return etag_matches(request.headers.get("if-none-match"), stored)


def write_response(request: Request, written: Written, base_url: str) -> Response:
    stored = written.stored
    status = 201 if written.created else 200
    headers = {"Location": f"{base_url}/{stored.reference}/_history/{stored.version}"}
    mode = prefer_return(request)
    if mode == "minimal":
        return Response(status_code=status, headers={**version_headers(stored, base_url),
                                                      **headers})
    if mode == "OperationOutcome":
        verb = "Created" if written.created else "Updated"
        outcome = operation_outcome([Issue("informational", f"{verb} {stored.reference} "
                                           f"version {stored.version}", "information")])
        return json_response(outcome, status=status,
                             headers={**version_headers(stored, base_url), **headers},
                             pretty_print=pretty(request))
    return resource_response(request, stored, base_url, status=status, extra_headers=headers)


def info_outcome(request: Request, message: str, *, headers: dict[str, str] | None = None
                 ) -> Response:
    outcome = operation_outcome([Issue("informational", message, "information")])
    return json_response(outcome, headers=headers, pretty_print=pretty(request))
