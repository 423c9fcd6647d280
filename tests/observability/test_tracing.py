"""OpenTelemetry: a server process exporting to an in-process OTLP/HTTP collector; a span per
request (continuing the caller's traceparent), per database call and per payer call,
the W3C traceparent received by a loopback payer, the trace id in X-Request-Id; no
attribute carries an id or content. A delivery's span continues the trace of its events'
commit, or links to each of several. Off by default: no tracer, a shared no-op span."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode

from fhir_server.core.config import Settings
from fhir_server.observability import tracing
from tests.factories import patient
from tests.observability.helpers import check_eligibility, insured_patient
from tests.observability.peers import ExportedSpan, loopback_payer, otlp_collector
from tests.support.server_process import server_process
from tests.support.store import HTTP_TIMEOUT, Store, mint_for_database
from tests.workflow.helpers import create

SERVER, CLIENT = 2, 3  # opentelemetry.proto SpanKind values


@pytest.mark.slow
@pytest.mark.process
async def test_spans_of_a_payer_call_reach_the_collector_and_the_payer(
        store: Store, tmp_path: Path) -> None:
    secret = f"Qzx{uuid.uuid4().hex[:10]}"
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with otlp_collector() as collector, loopback_payer() as payer:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
               "OTEL_BSP_SCHEDULE_DELAY": "200"}
        with server_process(store, log=tmp_path / "log", **env) as run:
            token = await mint_for_database(store, run.base)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
            async with httpx.AsyncClient(base_url=run.base + "/", headers=headers,
                                         timeout=HTTP_TIMEOUT) as http:
                insured = await insured_patient(http, payer.base, family=secret)
                checked = await check_eligibility(http, insured.coverage_id, headers={
                    "traceparent": f"00-{caller_trace}-{caller_span}-01"})
                assert checked.status_code == 200, checked.text
                other = await create(http, patient(family=secret))
                read = await http.get(f"Patient/{other['id']}")
                assert read.status_code == 200
        assert run.exit_code == 0  # the last spans are sent at shutdown
        spans = list(collector.spans)

    # The caller's trace goes on: the request's span is its child, the id is the trace id.
    assert checked.headers["x-request-id"] == caller_trace
    in_trace = [s for s in spans if s.trace_id == caller_trace]
    [request] = [s for s in in_trace if s.kind == SERVER]
    assert request.parent_span_id == caller_span
    assert request.name == "POST /fhir/Coverage/{id_}/$eligibility"
    assert request.attributes["http.route"] == "/fhir/Coverage/{id_}/$eligibility"
    assert request.attributes["fhir.interaction"] == "$eligibility"
    assert request.attributes["fhir.resource_type"] == "Coverage"
    assert request.attributes["http.response.status_code"] == 200
    # Its database calls and its payer call are its children.
    database = [s for s in in_trace if s.name.startswith("db ")]
    assert database and all(s.parent_span_id == request.span_id and s.kind == CLIENT
                            for s in database)
    assert {"db.system", "db.operation.name"} <= set(database[0].attributes)
    [call] = [s for s in in_trace if s.name == "payer POST"]
    assert (call.kind, call.parent_span_id) == (CLIENT, request.span_id)
    assert call.attributes["endpoint"] == insured.endpoint
    assert call.attributes["outcome"] == "ok"
    # The payer was sent our traceparent: same trace, the payer call's span as parent.
    [sent] = payer.headers
    assert sent["traceparent"] == f"00-{caller_trace}-{call.span_id}-01"
    # Without a caller's trace or request id, the answer's X-Request-Id is the new trace id.
    new_trace = read.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", new_trace)
    [read_span] = [s for s in spans if s.trace_id == new_trace and s.kind == SERVER]
    assert read_span.attributes["http.route"] == "/fhir/{type_}/{id_}"
    assert {s.service for s in spans} == {"fhir-rcm-server"}
    # No attribute or span name carries a resource id or content.
    ids = {insured.patient_id, insured.coverage_id, other["id"]}
    for span in spans:
        assert not _mentions(span, {secret, *ids}), span


def _mentions(span: ExportedSpan, words: set[str]) -> bool:
    text = " ".join([span.name, *(str(v) for v in span.attributes.values())])
    return any(word in text for word in words)


def test_tracing_is_off_without_an_endpoint(tmp_path: Path) -> None:
    assert tracing.configure(Settings(fhir_data_dir=tmp_path)) is None
    assert tracing.tracer() is None
    first, second = tracing.client_span("payer POST"), tracing.client_span("EHR GET")
    assert first is second  # one shared no-op, nothing made per call
    with first as span:
        assert span is None
    headers = {"Accept": "application/fhir+json"}
    assert tracing.with_traceparent(headers) is headers
    # Nothing for the outbox to keep, and deliveries share the no-op too.
    assert tracing.current_traceparent() is None
    sent = [Sent(1, f"00-{'1' * 32}-{'2' * 16}-01")]
    assert tracing.delivery_span("amqp publish", sent) is first


@dataclass(frozen=True)
class Sent:
    number: int
    trace: str | None


def _traceparent(span: ReadableSpan) -> str:
    assert span.context is not None
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def test_a_delivery_continues_its_commit_or_links_to_each_of_several(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    tracer = tracing.configure(Settings(fhir_data_dir=tmp_path), exporter=exporter)
    assert tracer is not None
    try:
        with tracer.start_as_current_span("commit one") as one:
            first = tracing.current_traceparent()
        with tracer.start_as_current_span("commit two"):
            second = tracing.current_traceparent()
        assert first and second and first != second
        # Events of one commit (one, or a transaction's): the committing span's child.
        with tracing.delivery_span("amqp publish", [Sent(1, first), Sent(2, first)],
                                   kind=SpanKind.PRODUCER, channel="x") as span:
            assert tracing.with_traceparent({})["traceparent"].split("-")[1] == first.split(
                "-")[1]
        # Events of several commits: a new trace, a link to each commit; an event committed
        # without tracing has none.
        with tracing.delivery_span("amqp publish", [Sent(3, first), Sent(4, second),
                                                     Sent(5, None)]):
            pass
        # A failure ends the span as an error named by its type, never by its message.
        with pytest.raises(ConnectionError), tracing.delivery_span("amqp publish",
                                                                  [Sent(6, second)]):
            raise ConnectionError("amqp://user:secret@mq:5672")
        assert span is not None
    finally:
        tracing.shutdown()
    commits = {s.name: s for s in exporter.get_finished_spans() if s.name.startswith("commit")}
    assert _traceparent(commits["commit one"]) == first
    single, several, failed = [s for s in exporter.get_finished_spans()
                               if s.name == "amqp publish"]
    assert single.parent is not None and single.parent.span_id == one.get_span_context().span_id
    assert single.kind == SpanKind.PRODUCER and not single.links
    assert dict(single.attributes or {}) == {"channel": "x", "fhir.event.number": 2,
                                             "fhir.event.count": 2}
    assert several.parent is None and several.context is not None
    assert several.context.trace_id not in {c.context.trace_id for c in commits.values()
                                            if c.context is not None}
    assert [(_link(link), dict(link.attributes or {})) for link in several.links] == [
        (first, {"fhir.event.number": 3}), (second, {"fhir.event.number": 4})]
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes or {})["outcome"] == "ConnectionError"
    assert "secret" not in str(failed.status.description)


def _link(link: Link) -> str:
    context = link.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
