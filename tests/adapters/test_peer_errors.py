"""What the caller of an operation that calls a peer is told when the call fails, through
the real server (both engines): one answer for an address the guard refuses, a closed
port, a peer that answers HTTP 401 and one that does not speak HTTP; nothing reaches a
refused address and nothing is half-written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fhir_server.adapters.peer_errors import unreachable_text
from tests.adapters.listeners import NOT_HTTP, Listener, http_answer
from tests.factories import coverage, patient, payer_org
from tests.support.server_process import free_port
from tests.workflow.helpers import create, post

CONNECTION = {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
              "code": "hl7-fhir-rest"}
UNAUTHORIZED = http_answer(401, {"resourceType": "OperationOutcome", "issue": [
    {"severity": "error", "code": "login", "diagnostics": "no token"}]})


@pytest.fixture
async def peers() -> AsyncIterator[dict[str, Listener]]:
    """The allowed peers (one answering 401, one not speaking HTTP) and a forbidden one."""
    made = {"unauthorized": await Listener(UNAUTHORIZED).start(),
            "not_http": await Listener(NOT_HTTP).start(),
            "forbidden": await Listener(http_answer(200, {})).start()}
    yield made
    for listener in made.values():
        await listener.stop()


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.fixture
def settings_overrides(peers: dict[str, Listener], closed_port: int) -> dict[str, object]:
    allowed = [f"127.0.0.1:{peers[k].port}" for k in ("unauthorized", "not_http")]
    return {"fhir_peer_allowed_hosts": ",".join([*allowed, f"127.0.0.1:{closed_port}"]),
            "fhir_payer_retries": 0, "fhir_payer_breaker_failures": 100}


async def _payer(client: httpx.AsyncClient, address: str) -> dict[str, Any]:
    """An Endpoint at ``address``, its payer, a member and the member's Coverage."""
    endpoint = await create(client, {"resourceType": "Endpoint", "status": "active",
                                     "connectionType": CONNECTION, "address": address,
                                     "payloadType": [{"text": "FHIR R4"}]})
    org = await create(client, payer_org("Acme", "ACME", endpoint=f"Endpoint/{endpoint['id']}"))
    person = await create(client, patient(family="Member"))
    cov = await create(client, coverage(patient=f"Patient/{person['id']}",
                                        payer=f"Organization/{org['id']}", member_id="M-1"))
    return {"endpoint": endpoint, "org": org, "patient": person, "coverage": cov}


async def _move(client: httpx.AsyncClient, endpoint: dict[str, Any], address: str) -> None:
    r = await client.put(f"Endpoint/{endpoint['id']}", json={**endpoint, "address": address})
    assert r.status_code == 200, r.text


async def _total(client: httpx.AsyncClient, type_: str) -> int:
    r = await client.get(type_, params={"_summary": "count"})
    return int(r.json()["total"])


async def test_every_failure_answers_alike(client: httpx.AsyncClient, peers: dict[str, Listener],
                                          closed_port: int) -> None:
    world = await _payer(client, peers["forbidden"].url)
    answers = []
    for address in (peers["forbidden"].url, f"http://127.0.0.1:{closed_port}/fhir",
                    peers["unauthorized"].url, peers["not_http"].url):
        await _move(client, world["endpoint"], address)
        r = await post(client, f"Coverage/{world['coverage']['id']}/$eligibility",
                       {"resourceType": "Parameters"})
        answers.append((r.status_code, r.json()))
    expected = unreachable_text("payer", f"Endpoint/{world['endpoint']['id']}")
    assert answers[0][0] == 502
    assert answers[0][1]["issue"] == [{"severity": "error", "code": "transient",
                                       "diagnostics": expected}]
    assert all(answer == answers[0] for answer in answers[1:]), answers
    # The allowed peers were reached (they answered); the forbidden one never was.
    assert (peers["unauthorized"].connections, peers["not_http"].connections) == (1, 1)
    assert peers["forbidden"].connections == 0
    assert await _total(client, "CoverageEligibilityRequest") == 0


async def test_claim_to_a_forbidden_address_sends_nothing(
        client: httpx.AsyncClient, peers: dict[str, Listener]) -> None:
    world = await _payer(client, peers["forbidden"].url)
    claim = {"resourceType": "Claim", "status": "active", "use": "claim",
             "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                                  "code": "professional"}]},
             "patient": {"reference": f"Patient/{world['patient']['id']}"},
             "created": "2026-06-01", "provider": {"reference": f"Organization/{world['org']['id']}"},
             "priority": {"coding": [{"code": "normal"}]},
             "insurance": [{"sequence": 1, "focal": True,
                            "coverage": {"reference": f"Coverage/{world['coverage']['id']}"}}]}
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 502, r.text
    assert r.json()["issue"][0]["diagnostics"] == unreachable_text(
        "payer", f"Endpoint/{world['endpoint']['id']}")
    assert peers["forbidden"].connections == 0
    # The claim is kept, unanswered, on the worklist until its payer can be reached.
    assert await _total(client, "Claim") == 1
    assert await _total(client, "ClaimResponse") == 0
    r = await client.get("Task", params={
        "code": "https://fhir-rcm-server.org/CodeSystem/worklist|submit-claim",
        "status": "failed"})
    [task] = [e["resource"] for e in r.json()["entry"]]
    assert f"Endpoint/{world['endpoint']['id']}" in task["statusReason"]["text"]


async def test_ehr_sync_from_a_forbidden_address_reads_nothing(
        client: httpx.AsyncClient, peers: dict[str, Listener]) -> None:
    endpoint = await create(client, {"resourceType": "Endpoint", "status": "active",
                                     "connectionType": CONNECTION,
                                     "address": peers["forbidden"].url,
                                     "payloadType": [{"text": "FHIR R4"}]})
    r = await post(client, f"Endpoint/{endpoint['id']}/$sync", {"resourceType": "Parameters"})
    assert r.status_code == 502, r.text
    assert r.json()["issue"][0]["diagnostics"] == unreachable_text(
        "EHR", f"Endpoint/{endpoint['id']}")
    assert peers["forbidden"].connections == 0
