"""Real peers on loopback for the observability tests: a payer that answers eligibility
checks and keeps the headers it was sent, and an OTLP/HTTP collector that decodes the
spans a server process exports (the protobuf messages of opentelemetry-proto)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.loopback import serve_in_thread


@dataclass
class Payer:
    base: str
    headers: list[dict[str, str]] = field(default_factory=list)  # of every request, in order


@contextmanager
def loopback_payer(delay: float = 0.0) -> Iterator[Payer]:
    """A payer's FHIR endpoint: every eligibility check is answered 'in force', after
    ``delay`` seconds."""
    heard: list[dict[str, str]] = []

    async def submit(request: Request) -> JSONResponse:
        heard.append(dict(request.headers))
        await asyncio.sleep(delay)
        return JSONResponse({
            "resourceType": "CoverageEligibilityResponse", "id": "payer-answer-1",
            "status": "active", "purpose": ["validation"],
            "patient": {"reference": "Patient/payer-member"},
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "request": {"reference": "CoverageEligibilityRequest/payer-request"},
            "outcome": "complete", "insurer": {"reference": "Organization/payer-itself"},
            "insurance": [{"coverage": {"reference": "Coverage/payer-coverage"},
                           "inforce": True}]})

    app = Starlette(routes=[Route("/fhir/{type_}/$submit", submit, methods=["POST"])])
    with serve_in_thread(app) as base:
        payer = Payer(base=f"{base}/fhir")
        payer.headers = heard
        yield payer


@dataclass(frozen=True)
class ExportedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    service: str
    links: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # (trace id, span id, attributes)
    status: int = 0  # opentelemetry.proto Status.StatusCode: 0 unset, 1 ok, 2 error


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def decode(body: bytes) -> list[ExportedSpan]:
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    out = []
    for resource_spans in message.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(ExportedSpan(
                    name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(), kind=span.kind,
                    attributes={a.key: _value(a.value) for a in span.attributes},
                    service=str(resource.get("service.name")),
                    links=tuple((link.trace_id.hex(), link.span_id.hex(),
                                 {a.key: _value(a.value) for a in link.attributes})
                                for link in span.links),
                    status=span.status.code))
    return out


@dataclass
class Collector:
    endpoint: str
    spans: list[ExportedSpan] = field(default_factory=list)


@contextmanager
def otlp_collector() -> Iterator[Collector]:
    """An OTLP/HTTP (protobuf) trace receiver: ``POST /v1/traces``."""
    spans: list[ExportedSpan] = []

    async def receive(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        spans.extend(decode(body))
        return Response(ExportTraceServiceResponse().SerializeToString(),
                        media_type="application/x-protobuf")

    app = Starlette(routes=[Route("/v1/traces", receive, methods=["POST"])])
    with serve_in_thread(app) as base:
        collector = Collector(endpoint=base)
        collector.spans = spans
        yield collector
