"""A trace from the committing request to each delivery: with tracing on (exporting to an
in-process OTLP collector on loopback), a REST create whose Subscription notification goes
to a receiver on loopback. The delivery's span is the child of the span that committed the
change, in the create's trace; the receiver gets the delivery span's traceparent; no span
carries a URL, a header or content."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.observability.peers import Collector, ExportedSpan, otlp_collector
from tests.subscriptions.helpers import FAST, observation, subscribe
from tests.subscriptions.receiver import receiver

SERVER, CLIENT = 2, 3  # opentelemetry.proto SpanKind values


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as made:
        yield made


@pytest.fixture
def settings_overrides(collector: Collector, monkeypatch: pytest.MonkeyPatch
                       ) -> dict[str, object]:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # spans exported within 50 ms
    return {**FAST, "otel_exporter_otlp_endpoint": collector.endpoint}


async def exported(collector: Collector, found: Callable[[ExportedSpan], bool],
                   timeout: float = 10.0) -> ExportedSpan:
    deadline = time.monotonic() + timeout
    while True:
        for span in list(collector.spans):
            if found(span):
                return span
        if time.monotonic() > deadline:
            raise AssertionError("the span did not reach the collector")
        await asyncio.sleep(0.05)


async def exported_all(collector: Collector, count: int,
                       found: Callable[[ExportedSpan], bool]) -> list[ExportedSpan]:
    await exported(collector, lambda _: len([s for s in collector.spans if found(s)]) >= count)
    return [s for s in collector.spans if found(s)]


async def test_a_rest_hook_delivery_continues_the_trace_of_the_create(
        client: httpx.AsyncClient, collector: Collector) -> None:
    secret = f"Qzx{uuid.uuid4().hex[:10]}"
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with receiver() as hook:
        subscription_id, _ = await subscribe(
            client, "Observation?status=final", f"{hook.url}/hook",
            payload="application/fhir+json", headers=(f"Authorization: Bearer {secret}-key",))
        created = await client.post(
            "Observation", json={**observation("final"), "note": [{"text": secret}]},
            headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
        assert created.status_code == 201, created.text
        [got] = await hook.until(1)
        delivery = await exported(collector, lambda s: s.name == "subscription deliver"
                                  and s.trace_id == caller_trace)
    spans = list(collector.spans)
    in_trace = [s for s in spans if s.trace_id == caller_trace]
    [request] = [s for s in in_trace if s.kind == SERVER]
    assert request.parent_span_id == caller_span
    # The delivery's parent is the span that committed the change: a database call of the
    # create's request.
    [commit] = [s for s in in_trace if s.span_id == delivery.parent_span_id]
    assert commit.name.startswith("db ") and commit.parent_span_id == request.span_id
    assert delivery.kind == CLIENT
    assert delivery.attributes == {
        "fhir.subscription": f"Subscription/{subscription_id}",
        "fhir.subscription.channel": "rest-hook",
        "fhir.event.number": int(got.headers["x-fhir-event-number"]),
        "fhir.event.count": 1, "outcome": "delivered"}
    # The receiver can continue the trace: the delivery span is its parent.
    assert got.headers["traceparent"] == f"00-{caller_trace}-{delivery.span_id}-01"
    # No span names or carries the endpoint, a header, the content or the resource's id.
    port = hook.url.rsplit(":", 1)[-1]
    words = {hook.url, "127.0.0.1", port, "/hook", secret, created.json()["id"]}
    for span in spans:
        text = " ".join([span.name, *(str(v) for v in span.attributes.values()),
                         *(str(v) for _, _, link in span.links for v in link.values())])
        assert not any(word in text for word in words), span


async def test_a_failed_attempt_is_a_span_with_its_outcome(
        client: httpx.AsyncClient, collector: Collector) -> None:
    caller_trace = uuid.uuid4().hex
    with receiver() as hook:
        hook.status = 503
        subscription_id, _ = await subscribe(client, "Observation?status=final", hook.url)
        created = await client.post("Observation", json=observation("final"), headers={
            "traceparent": f"00-{caller_trace}-{uuid.uuid4().hex[:16]}-01"})
        assert created.status_code == 201, created.text
        await hook.until(3)  # FHIR_SUBSCRIPTION_MAX_ATTEMPTS in these tests
        attempts = await exported_all(collector, 3, lambda s: s.name == "subscription deliver"
                                      and s.trace_id == caller_trace)
    assert len({s.span_id for s in attempts}) == 3  # one span per attempt
    assert {(s.attributes["outcome"], s.status) for s in attempts} == {("failed", 2)}
    assert {s.attributes["fhir.subscription"] for s in attempts} == {
        f"Subscription/{subscription_id}"}
    assert {g.headers["traceparent"] for g in hook.got} == {
        f"00-{caller_trace}-{s.span_id}-01" for s in attempts}
