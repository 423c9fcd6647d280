"""FHIR errors that render themselves as OperationOutcomes, and the app's exception handlers.

Every failure a client can cause is a ``FhirError`` with an HTTP status, an
OperationOutcome issue code, a diagnostic written for the client, and the
FHIRPath ``expression`` of the offending element where there is one.
Diagnostics name elements and identifiers, never resource content.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from fhir_server.observability.logs import loggable_path

log = logging.getLogger("fhir_server.core.errors")
STACK_FRAMES = 6  # innermost frames logged for an internal error


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


@dataclass
class FhirError(Exception):
    """An error answered to the client as an OperationOutcome."""

    status: int = 400
    code: str = "processing"
    diagnostics: str = "The request could not be processed"
    expression: Sequence[str] = ()
    extra_issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)

    @property
    def issues(self) -> list[Issue]:
        first = Issue(self.code, self.diagnostics, "error", tuple(self.expression))
        return [first, *self.extra_issues]

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def _error(status: int, code: str):  # type: ignore[no-untyped-def]
    def init(
        self: FhirError,
        diagnostics: str,
        *,
        expression: Sequence[str] = (),
        code: str = code,
        extra_issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        FhirError.__init__(
            self,
            status=status,
            code=code,
            diagnostics=diagnostics,
            expression=tuple(expression),
            extra_issues=list(extra_issues or []),
            headers=dict(headers or {}),
        )

    return init


class Invalid(FhirError):
    """400: the request or the resource is not valid."""

    __init__ = _error(400, "invalid")


class Unauthorized(FhirError):
    __init__ = _error(401, "login")


class Forbidden(FhirError):
    __init__ = _error(403, "forbidden")


class NotFound(FhirError):
    __init__ = _error(404, "not-found")


class MethodNotAllowed(FhirError):
    __init__ = _error(405, "not-supported")


class NotAcceptable(FhirError):
    __init__ = _error(406, "not-supported")


class Conflict(FhirError):
    __init__ = _error(409, "conflict")


class Gone(FhirError):
    __init__ = _error(410, "deleted")


class PreconditionFailed(FhirError):
    __init__ = _error(412, "conflict")


class PayloadTooLarge(FhirError):
    __init__ = _error(413, "too-costly")


class UnsupportedMediaType(FhirError):
    __init__ = _error(415, "not-supported")


class Unprocessable(FhirError):
    __init__ = _error(422, "processing")


class TooManyRequests(FhirError):
    __init__ = _error(429, "throttled")


class Upstream(FhirError):
    __init__ = _error(502, "transient")


class UpstreamTimeout(FhirError):
    __init__ = _error(504, "timeout")


def _outcome_response(status: int, outcome: dict[str, Any], headers: dict[str, str]) -> Response:
    # Imported here: negotiation imports this module for its errors.
    from fhir_server.api.negotiation import fhir_response_for_error

    return fhir_response_for_error(status, outcome, headers)


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else uuid.uuid4().hex


def install_handlers(app: FastAPI, *, unavailable: tuple[type[Exception], ...] = ()) -> None:
    """Turn every exception into an OperationOutcome response.

    ``unavailable`` names the storage errors that mean the database cannot be
    reached: they answer 503 (transient) rather than 500.
    """

    async def _unavailable(request: Request, exc: Exception) -> Response:
        rid = request_id(request)
        log.error("database unavailable request_id=%s error=%s", rid, type(exc).__name__)
        issue = Issue("transient", f"The database is unavailable; retry later (request id {rid})")
        return _outcome_response(503, operation_outcome([issue]),
                                 {"Retry-After": "5", "X-Request-Id": rid})

    for kind in unavailable:
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(FhirError)
    async def _fhir_error(request: Request, exc: FhirError) -> Response:
        return _outcome_response(exc.status, exc.outcome(), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        issues = [
            Issue("invalid", str(e.get("msg", "invalid value")), "error",
                  (".".join(str(p) for p in e.get("loc", ())),))
            for e in exc.errors()
        ]
        return _outcome_response(400, operation_outcome(issues), {})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            detail = f"No such endpoint: {request.method} {request.url.path}"
        issue = Issue(code, detail)
        return _outcome_response(exc.status_code, operation_outcome([issue]), {})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        rid = request_id(request)
        # Type and stack only: an exception's text can quote resource content.
        log.error(
            "internal error request_id=%s method=%s path=%s error=%s stack=%s",
            rid, request.method,
            loggable_path(request.url.path, getattr(request.scope.get("route"), "path", None)),
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)[-STACK_FRAMES:]).replace("\n", " | "),
        )
        issue = Issue("exception", f"Internal error (request id {rid})", "fatal")
        return _outcome_response(500, operation_outcome([issue]), {"X-Request-Id": rid})
