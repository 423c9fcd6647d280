"""The RabbitMQ bridge with tracing on (exporting to an in-process OTLP collector): a publish
runs in an 'amqp publish' span, the child of the span that committed the event, in the
trace of the request that made the change; the message carries that span's traceparent;
the span names the exchange, never the broker's URL, host, port or password."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from tests import factories
from tests.observability.peers import Collector, ExportedSpan, otlp_collector
from tests.support.rabbitmq import Broker, bind_queue, bridge_cursor, first_of_each, receive

pytestmark = [pytest.mark.process]

SERVER, PRODUCER = 2, 4  # opentelemetry.proto SpanKind values


@pytest.fixture
def exchange() -> str:
    return f"fhir.test.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as made:
        yield made


@pytest.fixture
def settings_overrides(rabbitmq: Broker, exchange: str, collector: Collector,
                       monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    return {"fhir_amqp_url": rabbitmq.url, "fhir_amqp_exchange": exchange,
            "fhir_events_poll_seconds": 0.01,
            "otel_exporter_otlp_endpoint": collector.endpoint}


async def publish_span(collector: Collector, trace_id: str) -> ExportedSpan:
    deadline = time.monotonic() + 10
    while True:
        found = [s for s in list(collector.spans)
                 if s.name == "amqp publish" and s.trace_id == trace_id]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "the publish span did not reach the collector"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_message_continues_the_trace_of_the_commit(
        app: FastAPI, client: httpx.AsyncClient, rabbitmq: Broker, exchange: str,
        collector: Collector) -> None:
    queue = await bind_queue(rabbitmq.url, exchange, "Patient.*")
    await bridge_cursor(app.state.repo)
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    created = await client.post("Patient", json=factories.patient(family="Kowalski"),
                                headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
    assert created.status_code == 201, created.text
    [change] = [c for c in await app.state.repo.events(after=0, limit=100)
                if c.id_ == created.json()["id"]]
    [got] = first_of_each(await receive(rabbitmq.url, queue, ids=[str(change.number)]))
    publish = await publish_span(collector, caller_trace)
    spans = list(collector.spans)
    [request] = [s for s in spans if s.trace_id == caller_trace and s.kind == SERVER]
    [commit] = [s for s in spans if s.span_id == publish.parent_span_id]
    assert commit.name.startswith("db ") and commit.parent_span_id == request.span_id
    assert publish.kind == PRODUCER
    assert publish.attributes == {
        "messaging.system": "rabbitmq", "messaging.operation.type": "publish",
        "messaging.destination.name": exchange, "fhir.event.number": change.number,
        "fhir.event.count": 1, "outcome": "confirmed", "messaging.confirmed": 1}
    assert got.traceparent == f"00-{caller_trace}-{publish.span_id}-01"
    assert "traceparent" not in got.body  # the body stays the event's identifiers
    port = rabbitmq.url.rsplit(":", 1)[-1].strip("/")
    for span in spans:
        text = " ".join([span.name, *(str(v) for v in span.attributes.values())])
        assert not any(word in text for word in (rabbitmq.url, port, "Kowalski")), span
