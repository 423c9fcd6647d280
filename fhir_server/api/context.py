"""The request context, as plain ASGI middleware: the request id, the audit event, the log line.

Starlette's ``BaseHTTPMiddleware`` runs every request through extra tasks and memory
streams; this wraps ``send`` instead. When the answer starts it adds ``X-Request-Id``
(the caller's, up to 64 characters, or a new one), queues the request's AuditEvent
(``audit/http.py``) and writes the access log line: path only, never the query string
(it can carry names and birth dates). A request that fails with an unhandled error is
audited as a 500 before the error handler answers it.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.audit.http import record_request

log = logging.getLogger("fhir_server")


@dataclass(frozen=True)
class Answered:
    """What the audit trail needs of an answer: its status and headers."""

    status_code: int
    headers: Headers


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = Headers(scope=scope).get("x-request-id", "")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        answered = False

        def finish(status: int, headers: Headers) -> None:
            request = Request(scope)
            record_request(request, Answered(status, headers))
            log.info("request id=%s method=%s path=%s status=%d ms=%.1f", rid, request.method,
                     request.url.path, status, (time.perf_counter() - start) * 1000)

        async def send_with_context(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                MutableHeaders(scope=message)["X-Request-Id"] = rid
                finish(message["status"], Headers(raw=message["headers"]))
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except Exception:
            if not answered:  # the server error handler outside answers it: audit it here
                finish(500, Headers())
            raise
