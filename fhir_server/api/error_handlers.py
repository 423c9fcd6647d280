"""The app's exception handlers: every exception answered as an OperationOutcome.

A ``FhirError`` (``fhir_server/core/errors.py``) answers its own status and outcome; a
request FastAPI could not bind answers 400, an unknown endpoint 404, a database that cannot
be reached 503, and anything else 500 "internal error" with a request id, the type and
stack going to the log, never the exception's text (it can quote resource content).
"""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.api.negotiation import fhir_response_for_error
from fhir_server.core.errors import FhirError, Issue, operation_outcome
from fhir_server.observability.logs import loggable_path

log = logging.getLogger("fhir_server.api.error_handlers")
STACK_FRAMES = 6  # innermost frames logged for an internal error


def _outcome_response(status: int, outcome: dict[str, Any], headers: dict[str, str]) -> Response:
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
        return internal_error(request, exc)


def internal_error(request: Request, exc: Exception) -> Response:
    """The 500 of an exception nothing else answered: a request id, the type and stack to
    the log."""
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


class InternalErrors:
    """Answers an exception no handler took, inside the middlewares that add headers.

    Starlette answers such an exception (the ``Exception`` handler above) in its outermost
    layer, outside every middleware: a browser app would get that 500 without CORS headers,
    which it sees as a network error, not as the OperationOutcome. Added innermost, this
    answers it where CORS still adds its headers; the handler above stays for what fails
    in the middlewares themselves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:  # too late to answer: the server closes the connection
                raise
            await internal_error(Request(scope), exc)(scope, receive, send)
