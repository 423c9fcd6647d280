"""FHIR_RATE_LIMIT_PER_MINUTE: a token bucket per client id (per address without a token);
429 with Retry-After and an OperationOutcome; /health, /ready and /metrics never limited."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.observability.rate_limit import TokenBuckets
from tests.support.store import ClientFor

PER_MINUTE = 3
ROOT = "http://testserver"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_rate_limit_per_minute": PER_MINUTE}


def assert_throttled(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert 1 <= int(answer.headers["retry-after"]) <= 60 // PER_MINUTE
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "throttled"


async def test_each_client_has_its_own_bucket(app: FastAPI, client_for: ClientFor) -> None:
    first = await client_for("system/Patient.rs", client_id="first-app")
    second = await client_for("system/Patient.rs", client_id="second-app")
    for _ in range(PER_MINUTE):
        assert (await first.get("Patient")).status_code == 200
    assert_throttled(await first.get("Patient"))
    assert_throttled(await first.get("Patient/any"))  # every FHIR route shares the bucket
    # Another client is not slowed down by the first one's burst.
    for _ in range(PER_MINUTE):
        assert (await second.get("Patient")).status_code == 200
    assert_throttled(await second.get("Patient"))


async def test_requests_without_a_token_count_by_address(app: FastAPI,
                                                         client_for: ClientFor) -> None:
    anonymous = await client_for(None)
    for _ in range(PER_MINUTE):
        assert (await anonymous.get("metadata")).status_code == 200
    assert_throttled(await anonymous.get("metadata"))
    assert_throttled(await anonymous.get(".well-known/smart-configuration"))


@pytest.mark.slow
async def test_health_ready_and_metrics_are_never_limited(app: FastAPI,
                                                          client_for: ClientFor) -> None:
    anonymous = await client_for(None)
    for _ in range(PER_MINUTE * 4):
        for path in ("/health", "/ready", "/metrics"):
            assert (await anonymous.get(ROOT + path)).status_code == 200, path
    assert_throttled(await _exhaust(anonymous))
    scraped = (await anonymous.get(ROOT + "/metrics")).text
    assert 'fhir_rate_limited_total{client_kind="address"}' in scraped


async def _exhaust(http: httpx.AsyncClient) -> httpx.Response:
    answer = await http.get("metadata")
    for _ in range(PER_MINUTE):
        answer = await http.get("metadata")
    return answer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_minute=60, burst=2, clock=clock)  # one a second, two at once
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0  # another key, its own bucket
    clock.now += 0.5
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0
    clock.now += 60  # a long pause refills to the burst, never beyond
    assert [buckets.take("a") for _ in range(3)] == [0, 0, pytest.approx(1.0)]
