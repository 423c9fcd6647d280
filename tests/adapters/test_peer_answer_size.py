"""A peer's answer is read under a bound, through the real server (both engines): an
endless chunked answer and one declaring a huge Content-Length, from a clearinghouse
(X12, FHIR_MAX_X12_BYTES) and from an EHR (a search page, FHIR_MAX_BUNDLE_BYTES), fail
fast with the generic peer message, the log saying "answer over N bytes", the connection
dropped while the peer was still sending, and not retried; an answer under the bound,
sent in chunks, is read as before."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from fhir_server.adapters.peer_errors import unreachable_text
from tests.adapters.listeners import Flood, Listener, chunked_answer, flood_head
from tests.workflow.helpers import create, post
from tests.x12.world import patient_with_coverage, setup_clinic

BUNDLE_LIMIT = 256 * 1024  # FHIR_MAX_BUNDLE_BYTES here: an EHR's search page
X12_LIMIT = 64 * 1024  # FHIR_MAX_X12_BYTES here: a clearinghouse's answer
HUGE = 8 * 1024 ** 3  # a declared Content-Length of 8 GiB
FAST = 5.0  # seconds: the call fails well within the read timeout
FHIR_REST = {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
             "code": "hl7-fhir-rest"}
FHIR_JSON = "application/fhir+json"
X12_MEDIA = "application/edi-x12"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # Retries left on: an answer over the bound must not be asked for again.
    return {"fhir_billing_provider": "Organization/clinic",
            "fhir_max_bundle_bytes": BUNDLE_LIMIT, "fhir_max_x12_bytes": X12_LIMIT,
            "fhir_payer_read_timeout": 30.0, "fhir_payer_breaker_failures": 100}


@pytest.fixture
async def listeners() -> AsyncIterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        await listener.stop()


async def start(listeners: list[Listener], listener: Listener) -> Listener:
    listeners.append(await listener.start())
    return listener


def flood(content_type: str, *, declared: bool) -> Flood:
    """Endless chunks, or a body declared as 8 GiB (sent until the client drops it)."""
    return Flood(flood_head(content_type, length=HUGE if declared else None),
                 chunked=not declared)


Called = tuple[httpx.Response, float, str]  # the answer, its seconds, the Endpoint


async def eligibility(client: httpx.AsyncClient, address: str) -> Called:
    """$eligibility for a member of a payer reached in X12 at ``address``."""
    world = await setup_clinic(client, address)
    member = await patient_with_coverage(client, world, member="M100")
    start = time.monotonic()
    r = await post(client, f"Coverage/{member['coverage']['id']}/$eligibility",
                   {"resourceType": "Parameters"})
    return r, time.monotonic() - start, world["endpoint"]


async def sync(client: httpx.AsyncClient, address: str) -> Called:
    """$sync of Patient from an EHR at ``address``."""
    endpoint = await create(client, {"resourceType": "Endpoint", "status": "active",
                                     "connectionType": FHIR_REST, "address": address,
                                     "payloadType": [{"text": "FHIR R4"}]})
    start = time.monotonic()
    r = await post(client, f"Endpoint/{endpoint['id']}/$sync", {
        "resourceType": "Parameters", "parameter": [{"name": "type", "valueCode": "Patient"}]})
    return r, time.monotonic() - start, f"Endpoint/{endpoint['id']}"


async def assert_cut_off(listener: Flood, r: httpx.Response, seconds: float, peer: str,
                         reference: str, limit: int, caplog: pytest.LogCaptureFixture) -> None:
    assert r.status_code == 502, r.text
    assert r.json()["issue"] == [{"severity": "error", "code": "transient",
                                  "diagnostics": unreachable_text(peer, reference)}]
    assert seconds < FAST, seconds
    await asyncio.wait_for(listener.ended.wait(), 10)
    # The peer was still sending when the connection was dropped, far short of its end,
    # and was asked once (not retried).
    assert listener.cut_off and listener.sent < listener.cap, (listener.sent, listener.cut_off)
    assert listener.connections == 1
    logged = [r.getMessage() for r in caplog.records if r.name == "fhir_server.adapters.peer"]
    assert any(f"endpoint={reference} detail=answer over {limit} bytes" in m
               for m in logged), logged


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
async def test_a_clearinghouse_answer_over_the_limit_is_cut_off(
        client: httpx.AsyncClient, listeners: list[Listener], declared: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fhir_server.adapters.peer")
    peer = await start(listeners, flood(X12_MEDIA, declared=declared))
    assert isinstance(peer, Flood)
    r, seconds, reference = await eligibility(client, f"http://127.0.0.1:{peer.port}")
    await assert_cut_off(peer, r, seconds, "payer", reference, X12_LIMIT, caplog)


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
async def test_an_ehr_search_page_over_the_limit_is_cut_off(
        client: httpx.AsyncClient, listeners: list[Listener], declared: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fhir_server.adapters.peer")
    peer = await start(listeners, flood(FHIR_JSON, declared=declared))
    assert isinstance(peer, Flood)
    r, seconds, reference = await sync(client, peer.url)
    await assert_cut_off(peer, r, seconds, "EHR", reference, BUNDLE_LIMIT, caplog)


async def test_an_ehr_search_page_under_the_limit_sent_in_chunks_is_read(
        client: httpx.AsyncClient, listeners: list[Listener]) -> None:
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"family": "Chunk"}],
                      "meta": {"lastUpdated": "2026-06-01T00:00:00Z"}},
         "search": {"mode": "match"}}]}
    body = json.dumps(bundle).encode()
    body += b" " * (BUNDLE_LIMIT - len(body))  # exactly at the limit: still read
    peer = await start(listeners, Listener(chunked_answer(FHIR_JSON, body)))
    r, _, _ = await sync(client, peer.url)
    assert r.status_code == 200, r.text
    found = (await client.get("Patient", params={"family": "Chunk"})).json()
    assert found.get("total", len(found.get("entry", []))) == 1, found
