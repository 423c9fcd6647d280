"""OpenTelemetry traces, on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

A span per request (``api/context.py``), per database call (``storage/instrumented.py``) and per
payer or EHR call (``fhir_server/adapters/peer_http.py``), sent in batches over OTLP/HTTP by a
background thread. The caller's W3C ``traceparent`` continues its trace; a payer or EHR
call carries ours.

From a commit to its deliveries: each change event keeps the ``traceparent`` of the span
that committed it (``current_traceparent``, stored by the outbox in the same commit), and
each delivery attempt (a Subscription's notification, an AMQP publish) runs in a span of its
own (``delivery_span``) that continues that trace: the child of the committing span when
every event it carries comes from one commit, else the root of a new trace with a link to
each event's commit. A rest-hook request (and an AMQP message) carries the delivery span's
``traceparent``, so a receiver can go on with it. The SDK's standard variables apply (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``/``_ARG``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_TIMEOUT``...).

Span attributes are the route template, the interaction, the resource type, the status,
the database operation, the peer's ``Endpoint/<id>``, a delivery's ``Subscription/<id>``,
channel, event numbers and outcome: never a URL, a header, a query or content.

Off, nothing here creates an object per request: the middleware and the database
wrappers check ``tracer()`` once, ``client_span`` and ``delivery_span`` hand back one shared
no-op, and ``current_traceparent`` answers None (an event stores nothing).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from fhir_server.core.config import Settings

log = logging.getLogger("fhir_server.tracing")
SERVICE_NAME = "fhir-rcm-server"
TRACES_PATH = "/v1/traces"
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_NO_SPAN = contextlib.nullcontext(None)
_W3C = TraceContextTextMapPropagator()


class _State:
    provider: Any = None  # opentelemetry.sdk.trace.TracerProvider while tracing is on
    tracer: trace.Tracer | None = None


_state = _State()


def configure(settings: Settings, *, exporter: Any = None) -> trace.Tracer | None:
    """Start tracing when the settings name a collector (or ``exporter`` is given: tests
    and embedding); returns the tracer, or None when tracing is off."""
    shutdown()
    if exporter is None and not settings.otel_exporter_otlp_endpoint:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = str(settings.otel_exporter_otlp_endpoint).rstrip("/")
        exporter = OTLPSpanExporter(endpoint=base + TRACES_PATH)
        log.info("tracing on endpoint=%s", base)
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _state.provider = provider
    _state.tracer = provider.get_tracer("fhir_server")
    return _state.tracer


def shutdown() -> None:
    """Send what is buffered and stop (the lifespan's end)."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


def tracer() -> trace.Tracer | None:
    return _state.tracer


def caller_trace_id(traceparent: str | None) -> str | None:
    """The trace id of a caller's ``traceparent`` header (for the logs when tracing is off)."""
    if traceparent:
        found = TRACEPARENT.match(traceparent.strip().lower())
        if found and found.group(1) != "0" * 32:
            return found.group(1)
    return None


def server_span(tracer_: trace.Tracer, method: str, headers: Mapping[str, str]) -> Any:
    """A request's span, continuing the caller's trace; ended by the caller."""
    parent = propagate.extract(headers)
    return tracer_.start_span(method, context=parent, kind=SpanKind.SERVER,
                              attributes={"http.request.method": method})


def trace_id(span: Any) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def finish_server_span(span: Any, *, route: str, interaction: str, resource_type: str,
                       status: int) -> None:
    span.update_name(f"{span.name} {route}")
    span.set_attributes({"http.route": route, "http.response.status_code": status,
                         "fhir.interaction": interaction, "fhir.resource_type": resource_type})
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


@contextlib.contextmanager
def _client_span(tracer_: trace.Tracer, name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    with tracer_.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes,
                                       record_exception=False,
                                       set_status_on_exception=False) as span:
        yield span


def client_span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A span around a call to another system (current while it runs), or a no-op."""
    tracer_ = _state.tracer
    if tracer_ is None:
        return _NO_SPAN
    return _client_span(tracer_, name, attributes)


def with_traceparent(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus the current span's W3C ``traceparent`` (unchanged when off)."""
    if _state.tracer is None:
        return headers
    carrier = dict(headers)
    propagate.inject(carrier)
    return carrier


def set_outcome(span: Any, outcome: str, *, error: bool) -> None:
    if span is None:
        return
    span.set_attribute("outcome", outcome)
    if error:
        span.set_status(Status(StatusCode.ERROR, outcome))


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, kept with the change events a commit
    appends; None when tracing is off or no span is current (nothing made then)."""
    if _state.tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


class Traced(Protocol):
    """An event as a delivery sees it: its number and its commit's ``traceparent``."""

    @property
    def number(self) -> int: ...
    @property
    def trace(self) -> str | None: ...


def _commit_context(traceparent: str) -> SpanContext | None:
    span = trace.get_current_span(_W3C.extract({"traceparent": traceparent}))
    context = span.get_span_context()
    return context if context.is_valid else None


def delivery_span(name: str, events: Sequence[Traced], *, kind: SpanKind = SpanKind.CLIENT,
                  **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A span around one delivery attempt of ``events`` (current while it runs), or a no-op
    when tracing is off or there are no events (a handshake, a heartbeat).

    Its parent is the committing span when every event comes from one commit; otherwise it
    starts a new trace with a link per event to its commit (an event committed without
    tracing has none). ``attributes`` are identifiers only; the span also gets the last
    event's number and the count. An exception ends it as an error, named by its type."""
    tracer_ = _state.tracer
    if tracer_ is None or not events:
        return _NO_SPAN
    commits = [(event.number, _commit_context(event.trace)) for event in events if event.trace]
    distinct = {(c.trace_id, c.span_id): c for _, c in commits if c is not None}
    parent = next(iter(distinct.values())) if len(distinct) == 1 else None
    links = [] if parent is not None else [
        Link(context, {"fhir.event.number": number}) for number, context in commits
        if context is not None]
    # An explicit context: a background task may have inherited a request's span.
    context = (trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent is not None
               else otel_context.Context())
    return _delivery(tracer_, name, kind, context, links, {
        **attributes, "fhir.event.number": events[-1].number, "fhir.event.count": len(events)})


@contextlib.contextmanager
def _delivery(tracer_: trace.Tracer, name: str, kind: SpanKind, context: otel_context.Context,
              links: list[Link], attributes: dict[str, Any]) -> Iterator[Any]:
    with tracer_.start_as_current_span(name, context=context, kind=kind, links=links,
                                       attributes=attributes, record_exception=False,
                                       set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as error:
            if "outcome" not in (getattr(span, "attributes", None) or {}):
                set_outcome(span, type(error).__name__, error=True)
            raise
