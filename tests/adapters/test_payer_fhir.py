"""The FHIR payer adapter against a real HTTP peer on loopback that misbehaves on cue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fhir_server.adapters.payer import PayerEndpoint
from fhir_server.adapters.payer_fhir import FhirPayerAdapter
from fhir_server.adapters.peer_errors import unreachable_text
from fhir_server.adapters.resilience import CircuitBreaker
from fhir_server.core.config import Settings
from fhir_server.core.errors import Upstream, UpstreamTimeout
from tests.support.loopback import serve_in_thread
from tests.support.server_process import free_port


@dataclass
class Script:
    """What the peer answers: a queue of (status, body, delay) then the default answer."""

    answers: list[tuple[int, dict[str, Any], float]] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)


def eligibility_response() -> dict[str, Any]:
    return {"resourceType": "CoverageEligibilityResponse", "id": "r1", "status": "active"}


def claim_response() -> dict[str, Any]:
    return {"resourceType": "ClaimResponse", "id": "c1", "status": "active"}


@pytest.fixture
def peer() -> Iterator[tuple[str, Script]]:
    script = Script()

    async def submit(request: Request) -> JSONResponse:
        script.hits.append(request.url.path)
        if script.answers:
            status, body, delay = script.answers.pop(0)
            await asyncio.sleep(delay)
            return JSONResponse(body, status_code=status)
        body = claim_response() if "Claim" in request.url.path else eligibility_response()
        return JSONResponse(body)

    app = Starlette(routes=[Route("/fhir/{type_}/$submit", submit, methods=["POST"])])
    with serve_in_thread(app) as base:
        yield f"{base}/fhir", script


def adapter(**overrides: Any) -> FhirPayerAdapter:
    values: dict[str, Any] = {"fhir_payer_connect_timeout": 1.0, "fhir_payer_read_timeout": 1.0,
                              "fhir_payer_retries": 2, "fhir_payer_breaker_failures": 3,
                              "fhir_payer_breaker_reset": 60.0, **overrides}
    return FhirPayerAdapter(Settings(**values))


def endpoint(address: str) -> PayerEndpoint:
    return PayerEndpoint(reference="Endpoint/payer", address=address)


UNAVAILABLE = (503, {"resourceType": "OperationOutcome", "issue": [
    {"severity": "error", "code": "transient", "diagnostics": "busy"}]}, 0.0)


async def test_idempotent_call_is_retried_after_a_5xx(peer: tuple[str, Script]) -> None:
    address, script = peer
    script.answers = [UNAVAILABLE]
    payer = adapter()
    try:
        answer = await payer.check_eligibility(endpoint(address), {"resourceType": "X"})
    finally:
        await payer.close()
    assert answer.resource == eligibility_response()
    assert len(script.hits) == 2


async def test_claim_submission_is_not_repeated_after_a_5xx(peer: tuple[str, Script]) -> None:
    address, script = peer
    script.answers = [UNAVAILABLE]
    payer = adapter()
    try:
        with pytest.raises(Upstream) as raised:
            await payer.submit_claim(endpoint(address), {"resourceType": "Claim"})
    finally:
        await payer.close()
    assert raised.value.status == 502
    assert len(script.hits) == 1


async def test_slow_payer_is_504_within_the_deadline(peer: tuple[str, Script]) -> None:
    address, script = peer
    script.answers = [(200, claim_response(), 5.0)]
    payer = adapter()
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout) as raised:
            await payer.submit_claim(endpoint(address), {"resourceType": "Claim"})
    finally:
        await payer.close()
    assert raised.value.status == 504
    assert time.monotonic() - started < 2.5  # read timeout 1 s, deadline 2 s
    assert len(script.hits) == 1


async def test_refusal_passes_the_payer_issue_codes_not_its_text(
        peer: tuple[str, Script]) -> None:
    address, script = peer
    script.answers = [(422, {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "business-rule", "diagnostics": "Mr Smith is not ours",
         "expression": ["Claim.patient"]}]}, 0.0)]
    payer = adapter()
    try:
        with pytest.raises(Upstream) as raised:
            await payer.submit_claim(endpoint(address), {"resourceType": "Claim"})
    finally:
        await payer.close()
    outcome = raised.value.outcome()
    assert outcome["issue"][0]["diagnostics"] == unreachable_text("payer", "Endpoint/payer")
    assert outcome["issue"][1]["code"] == "business-rule"
    assert outcome["issue"][1]["expression"] == ["Claim.patient"]
    assert "Smith" not in str(outcome)


async def test_wrong_resource_back_is_a_502(peer: tuple[str, Script]) -> None:
    address, script = peer
    script.answers = [(200, {"resourceType": "Patient"}, 0.0)]
    payer = adapter()
    try:
        with pytest.raises(Upstream):
            await payer.submit_claim(endpoint(address), {"resourceType": "Claim"})
    finally:
        await payer.close()


async def test_answer_nested_too_deeply_is_a_502(peer: tuple[str, Script]) -> None:
    address, script = peer
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "x"}
    for _ in range(100):  # beyond FHIR_MAX_JSON_DEPTH (64): 201 levels of objects and arrays
        extension = {"url": "http://example.org/x", "extension": [extension]}
    script.answers = [(200, {**claim_response(), "extension": [extension]}, 0.0)]
    payer = adapter()
    try:
        with pytest.raises(Upstream) as raised:
            await payer.submit_claim(endpoint(address), {"resourceType": "Claim"})
    finally:
        await payer.close()
    assert raised.value.status == 502
    assert raised.value.diagnostics == unreachable_text("payer", "Endpoint/payer")


async def test_breaker_opens_then_lets_one_trial_through(peer: tuple[str, Script]) -> None:
    address, script = peer
    payer = adapter(fhir_payer_retries=0, fhir_payer_breaker_failures=2,
                    fhir_payer_breaker_reset=0.5)
    try:
        script.answers = [UNAVAILABLE, UNAVAILABLE]
        for _ in range(2):
            with pytest.raises(Upstream):
                await payer.check_eligibility(endpoint(address), {})
        with pytest.raises(Upstream) as raised:
            await payer.check_eligibility(endpoint(address), {})
        assert payer.breaker(endpoint(address)).state == "open"
        assert raised.value.diagnostics == unreachable_text("payer", "Endpoint/payer")
        assert len(script.hits) == 2  # the open circuit did not call
        await asyncio.sleep(0.6)
        assert (await payer.check_eligibility(endpoint(address), {})).resource \
            == eligibility_response()
        assert payer.breaker(endpoint(address)).state == "closed"
    finally:
        await payer.close()


async def test_nothing_listening_is_a_502_after_retries() -> None:
    payer = adapter(fhir_payer_retries=2)
    started = time.monotonic()
    try:
        with pytest.raises(Upstream) as raised:
            await payer.submit_claim(endpoint(f"http://127.0.0.1:{free_port()}/fhir"), {})
    finally:
        await payer.close()
    assert raised.value.status == 502
    assert time.monotonic() - started < 3


def test_circuit_breaker_states() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=2, reset=10, clock=lambda: now[0])
    assert breaker.allow()
    breaker.failed()
    assert breaker.state == "closed"
    breaker.failed()
    assert breaker.state == "open"
    assert not breaker.allow()
    now[0] = 10.5
    assert breaker.state == "half-open"
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # only one at a time
    breaker.failed()
    assert breaker.state == "open"
    now[0] = 21
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed"


async def test_endpoint_with_a_broken_address_is_a_502_not_a_500() -> None:
    payer = adapter(fhir_payer_retries=0)
    try:
        with pytest.raises(Upstream) as raised:
            await payer.submit_claim(endpoint("http://[::1:80/fhir"), {})
    finally:
        await payer.close()
    assert "not a valid URL" in raised.value.diagnostics
