"""OpenTelemetry traces, on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

A span per request (``api/context.py``), per database call (``storage/instrumented.py``) and per
payer or EHR call (``fhir_server/adapters/peer_http.py``), sent in batches over OTLP/HTTP by a
background thread. The caller's W3C ``traceparent`` continues its trace; a payer or EHR
call carries ours. The SDK's standard variables apply (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``/``_ARG``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_TIMEOUT``...).

Span attributes are the route template, the interaction, the resource type, the status,
the database operation, the peer's ``Endpoint/<id>``: never a URL, a query or content.

Off, nothing here creates an object per request: the middleware and the database
wrappers check ``tracer()`` once, and ``client_span`` hands back one shared no-op.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from fhir_server.core.config import Settings

log = logging.getLogger("fhir_server.tracing")
SERVICE_NAME = "fhir-rcm-server"
TRACES_PATH = "/v1/traces"
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_NO_SPAN = contextlib.nullcontext(None)


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
