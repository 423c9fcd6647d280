"""The request context, as plain ASGI middleware: the request id, the trace, the audit event,
the metrics and the log line.

Starlette's ``BaseHTTPMiddleware`` runs every request through extra tasks and memory
streams; this wraps ``send`` instead. The request id is the caller's ``X-Request-Id``
(of ``[A-Za-z0-9._:-]``, cut at 64 characters), else the trace id when tracing is on, else
a new one; it and the trace id go into the context variables every log line reads
(``observability/logs.py``). When the answer starts it adds ``X-Request-Id``, queues the request's AuditEvent
(``audit/http.py``), counts and times the request by route template
(``observability/metrics.py``) and writes the access log line: path only, never the query
string (it can carry names and birth dates). A request that fails with an unhandled
error is audited as a 500 before the error handler answers it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.audit.http import record_request
from fhir_server.observability import metrics, tracing
from fhir_server.observability.logs import REQUEST_ID, TRACE_ID, loggable_path

log = logging.getLogger("fhir_server")
UNMATCHED = "unmatched"  # no route: a 404 before any handler


# A caller's X-Request-Id is kept only when it is an id: it goes into every log line of the
# request, so anything else (spaces, "level=ERROR msg=...") could forge a log line.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]+")


def caller_request_id(value: str) -> str | None:
    """The caller's request id (its first 64 characters), or None when it is not made of
    the safe alphabet (then the server uses its own)."""
    return value[:64] if SAFE_REQUEST_ID.fullmatch(value) else None


@dataclass(frozen=True)
class Answered:
    """What the audit trail needs of an answer: its status and headers."""

    status_code: int
    headers: Headers


def _route(scope: Scope) -> str:
    """The matched route's template with its router's prefix (``/fhir/{type_}/{id_}``).
    FastAPI keeps included routers whole and puts the route as declared (without the
    prefix) in ``scope["route"]``; the template as matched is its effective route."""
    matched = scope.get("fastapi", {}).get("effective_route_context")
    path = getattr(matched, "path_format", None)
    if path:
        return str(path)
    route = scope.get("route")
    return str(getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED)


READS = frozenset({"GET", "HEAD", "OPTIONS"})


def _wake_consumers(scope: Scope) -> None:
    """A write answered: this process's consumers of change events look at the outbox now
    rather than at their next poll (``events/runner.py``; another process's commits are
    seen within ``FHIR_EVENTS_POLL_SECONDS``)."""
    runner = getattr(getattr(scope.get("app"), "state", None), "events", None)
    if runner is not None:
        runner.wake()


class RequestContext:
    def __init__(self, app: ASGIApp, *, labels: metrics.RequestLabels) -> None:
        self.app, self.labels = app, labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        tracer = tracing.tracer()
        span: Any = None
        if tracer is None:
            trace_id = tracing.caller_trace_id(headers.get("traceparent"))
        else:
            span = tracing.server_span(tracer, scope["method"], headers)
            trace_id = tracing.trace_id(span)
        rid = caller_request_id(headers.get("x-request-id", "")) or trace_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        rid_token, trace_token = REQUEST_ID.set(rid), TRACE_ID.set(trace_id)
        start = time.perf_counter()
        answered = False
        metrics.IN_FLIGHT.inc()

        def finish(status: int, answer_headers: Headers) -> None:
            request = Request(scope)
            record_request(request, Answered(status, answer_headers))
            seconds = time.perf_counter() - start
            route = _route(scope)
            state = scope["state"]
            interaction, type_ = self.labels.of(state.get("interaction"),
                                                state.get("bundle_type"))
            metrics.REQUEST_RECORDER.record(method=request.method, route=route,
                                            interaction=interaction, resource_type=type_,
                                            status=status, seconds=seconds)
            if span is not None:
                tracing.finish_server_span(span, route=route, interaction=interaction,
                                           resource_type=type_, status=status)
            duration_ms = round(seconds * 1000, 1)
            log.info("request id=%s method=%s path=%s status=%d ms=%.1f", rid, request.method,
                     loggable_path(request.url.path, route), status, duration_ms,
                     extra={"method": request.method, "route": route, "status": status,
                            "duration_ms": duration_ms})

        async def send_with_context(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                MutableHeaders(scope=message)["X-Request-Id"] = rid
                finish(message["status"], Headers(raw=message["headers"]))
                if scope["method"] not in READS and message["status"] < 300:
                    _wake_consumers(scope)
            await send(message)

        try:
            if span is None:
                await self.app(scope, receive, send_with_context)
            else:
                with tracing.trace.use_span(span, end_on_exit=False, record_exception=False,
                                            set_status_on_exception=False):
                    await self.app(scope, receive, send_with_context)
        except Exception:
            if not answered:  # the server error handler outside answers it: audit it here
                finish(500, Headers())
            raise
        finally:
            metrics.IN_FLIGHT.dec()
            REQUEST_ID.reset(rid_token)
            TRACE_ID.reset(trace_token)
