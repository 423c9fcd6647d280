"""GET /metrics: scraped with prometheus-client's own text parser after a scripted mix of
requests; counts by route template, interaction and resource type, the database, the
payer adapter, the audit writer and the business counters; who may scrape."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from fhir_server.auth.tokens import LoginEvent
from tests.factories import patient
from tests.observability.helpers import (
    booked_appointment,
    check_eligibility,
    insured_patient,
    )
from tests.observability.peers import loopback_payer
from tests.support.server_process import server_process
from tests.support.store import HTTP_TIMEOUT, ClientFor, Store, mint_for_database
from tests.workflow.helpers import create

METRICS = "http://testserver/metrics"  # outside the FHIR base of the test clients
Labels = dict[str, str]
Samples = list[tuple[str, Labels, float]]


def parse(text: str) -> Samples:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for n, have, v in samples
               if n == name and all(have.get(k) == want for k, want in labels.items()))


async def scrape(http: httpx.AsyncClient, url: str, **kwargs: str) -> Samples:
    answer = await http.get(url, headers=kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


@pytest.mark.slow
@pytest.mark.process
async def test_metrics_after_a_scripted_mix(store: Store, tmp_path: Path) -> None:
    secret = f"Qzx{uuid.uuid4().hex[:10]}"
    with loopback_payer() as payer, server_process(store, log=tmp_path / "log") as run:
        token = await mint_for_database(store, run.base)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        async with httpx.AsyncClient(base_url=run.base + "/", headers=headers,
                                     timeout=HTTP_TIMEOUT) as http:
            ids = [(await create(http, patient(family=secret)))["id"] for _ in range(3)]
            for id_ in ids:
                assert (await http.get(f"Patient/{id_}")).status_code == 200
            assert (await http.get("Patient/not-there")).status_code == 404
            assert (await http.get("Patient", params={"family": secret})).status_code == 200
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": patient(family=secret), "request": {"method": "POST",
                                                                  "url": "Patient"}}] * 2}
            assert (await http.post("", json=bundle)).status_code == 200
            insured = await insured_patient(http, payer.base)  # Endpoint, Organization,
            eligible = await check_eligibility(http, insured.coverage_id)  # Patient, Coverage
            assert eligible.status_code == 200, eligible.text
            doc = await create(http, {"resourceType": "Practitioner", "name": [{"family": "D"}]})
            booked = await create(http, booked_appointment(insured.patient_id, doc["id"]))
            cancel = {**booked, "status": "cancelled"}
            assert (await http.put(f"Appointment/{booked['id']}", json=cancel)).status_code == 200
            ids += [insured.patient_id, insured.coverage_id, booked["id"], doc["id"]]
            fhir_requests = 3 + 3 + 1 + 1 + 1 + 4 + 1 + 1 + 1 + 1
            # The audit writer writes within its interval (0.5 s): poll for it.
            deadline = time.monotonic() + 30
            while True:
                samples = await scrape(http, run.root + "/metrics")  # no token: loopback
                written = value(samples, "fhir_audit_events_written_total")
                if written >= fhir_requests or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)

    assert written >= fhir_requests
    requests = "fhir_http_requests_total"
    create_ = {"method": "POST", "route": "/fhir/{type_}", "interaction": "create"}
    assert value(samples, requests, **create_, resource_type="Patient", code="201") == 4
    read = {"method": "GET", "route": "/fhir/{type_}/{id_}", "interaction": "read",
            "resource_type": "Patient"}
    assert value(samples, requests, **read, code="200") == 3
    assert value(samples, requests, **read, code="404") == 1
    assert value(samples, "fhir_http_request_duration_seconds_count", **read) == 4
    assert value(samples, requests, route="/fhir/{type_}", interaction="search-type",
                 resource_type="Patient", code="200") == 1
    assert value(samples, requests, route="/fhir/", interaction="transaction", code="200") == 1
    assert value(samples, requests, interaction="$eligibility", resource_type="Coverage",
                 route="/fhir/Coverage/{id_}/$eligibility", code="200") == 1
    assert value(samples, requests, interaction="update", resource_type="Appointment",
                 code="200") == 1
    assert value(samples, requests, route="/fhir/{type_}/{id_}") == 5  # 4 reads, 1 update
    assert value(samples, "fhir_http_requests_in_flight") == 1  # the scrape itself
    # The database: the creates' writes and the transaction's commit.
    assert value(samples, "fhir_db_call_duration_seconds_count", operation="write",
                 outcome="ok") >= 4 + 4
    assert value(samples, "fhir_db_call_duration_seconds_count",
                 operation="commit_transaction", outcome="ok") >= 1
    # The payer: one call, answered; its circuit closed.
    endpoint = {"peer": "payer", "endpoint": insured.endpoint}
    assert value(samples, "fhir_adapter_calls_total", **endpoint, outcome="ok") == 1
    assert value(samples, "fhir_adapter_calls_total", peer="payer") == 1
    assert value(samples, "fhir_adapter_call_duration_seconds_count", **endpoint) == 1
    assert value(samples, "fhir_adapter_circuit_open", **endpoint) == 0
    assert len(payer.headers) == 1
    # Business counters.
    assert value(samples, "fhir_eligibility_checks_total", outcome="eligible") == 1
    assert value(samples, "fhir_eligibility_checks_total") == 1
    assert value(samples, "fhir_appointments_total", event="booked") == 1
    assert value(samples, "fhir_appointments_total", event="cancelled") == 1
    assert value(samples, "fhir_audit_queue_depth") >= 0
    # No label carries an id or a value from the requests.
    for name, labels, _ in samples:
        for label in labels.values():
            assert secret not in label and not any(id_ in label for id_ in ids), (name, labels)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_metrics_allow": "10.0.0.0/8"}  # the test client (127.0.0.1) is outside


async def test_metrics_outside_the_allowed_networks_need_a_system_token(
        app: FastAPI, client_for: ClientFor) -> None:
    anonymous = await client_for(None)
    assert (await anonymous.get(METRICS)).status_code == 401
    patient_app = await client_for("patient/*.rs", patient="p1")
    refused = await patient_app.get(METRICS)
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    user = await client_for("user/*.rs", username="ann", role="billing")
    assert (await user.get(METRICS)).status_code == 403
    backend = await client_for("system/Patient.rs", client_id="prometheus")
    assert (await scrape(backend, METRICS))


async def test_login_counters(app: FastAPI, client_for: ClientFor) -> None:
    backend = await client_for("system/*.rs")
    before = await scrape(backend, METRICS)
    for success in (True, False, False):
        await app.state.auth.emit_login(LoginEvent(success=success, client_id="web",
                                                   username="ann", source="10.1.2.3"))
    after = await scrape(backend, METRICS)
    for outcome, more in (("success", 1), ("failure", 2)):
        name = "fhir_logins_total"
        assert value(after, name, outcome=outcome) - value(before, name, outcome=outcome) == more


@pytest.mark.slow
@pytest.mark.process
async def test_several_workers_add_up_in_every_scrape(store: Store, tmp_path: Path) -> None:
    """FHIR_WORKERS=2: whichever worker answers /metrics counts every worker's requests."""
    asked = 24
    with server_process(store, log=tmp_path / "log", FHIR_WORKERS="2") as run:
        for _ in range(asked):  # a new connection each: the kernel spreads them over the workers
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
                answer = await http.get(f"{run.base}/metadata", headers={"Connection": "close"})
                assert answer.status_code == 200
        for _ in range(6):
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
                samples = await scrape(http, run.root + "/metrics")
            assert value(samples, "fhir_http_requests_total", route="/fhir/metadata") == asked
        files = sorted(p.name for p in (store.data_dir / "metrics").glob("counter_*.db"))
        assert files, "no worker wrote its metrics to the shared directory"
