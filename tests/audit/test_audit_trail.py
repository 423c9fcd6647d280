"""The audit trail: one AuditEvent per interaction, found by FHIR search, with who, what,
where and the outcome; readable only with an audit scope; never any resource content."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.audit.events import CLIENT_SYSTEM, DCM, INTERACTION
from fhir_server.auth.tokens import LoginEvent
from fhir_server.main import quiet_driver_logs
from fhir_server.observability.logs import TEXT_FORMAT, JsonFormatter, RequestIds, TextFormatter
from fhir_server.service.validation import validate_resource
from tests.support.store import ClientFor

FHIR_JSON = {"Content-Type": "application/fhir+json"}
AUDITOR = "system/AuditEvent.rs"


async def _events(app: FastAPI, auditor: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    await app.state.audit.flush()
    resp = await auditor.get("AuditEvent", params={**params, "_count": "1000"})
    assert resp.status_code == 200, resp.text
    return [e["resource"] for e in resp.json().get("entry", [])]


def _client_agent(event: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in event["agent"] if a["type"]["coding"][0]["code"] == "110150")


def _whats(event: dict[str, Any]) -> set[str]:
    return {e["what"]["reference"] for e in event.get("entity", []) if "what" in e}


async def _patient(http: httpx.AsyncClient, family: str = "Audit") -> str:
    resp = await http.post("Patient", json={"resourceType": "Patient",
                                            "name": [{"family": family}]}, headers=FHIR_JSON)
    assert resp.status_code == 201
    return str(resp.json()["id"])


@pytest.fixture
async def auditor(client_for: ClientFor) -> httpx.AsyncClient:
    return await client_for(AUDITOR, client_id="auditor")


KINDS = ["read", "vread", "search-type", "create", "update", "patch", "delete",
         "history-instance", "history-type", "history-system", "transaction", "batch"]


async def _do(http: httpx.AsyncClient, kind: str, pid: str) -> httpx.Response:
    body = {"resourceType": "Patient", "id": pid, "name": [{"family": "Audit"}]}
    bundle_entry = {"request": {"method": "GET", "url": f"Patient/{pid}"}}
    calls = {
        "read": lambda: http.get(f"Patient/{pid}"),
        "vread": lambda: http.get(f"Patient/{pid}/_history/1"),
        "search-type": lambda: http.get("Patient", params={"name": "Audit"}),
        "create": lambda: http.post("Patient", json={"resourceType": "Patient"},
                                    headers=FHIR_JSON),
        "update": lambda: http.put(f"Patient/{pid}", json=body, headers=FHIR_JSON),
        "patch": lambda: http.patch(f"Patient/{pid}", json=[
            {"op": "add", "path": "/gender", "value": "other"}],
            headers={"Content-Type": "application/json-patch+json"}),
        "delete": lambda: http.delete(f"Patient/{pid}"),
        "history-instance": lambda: http.get(f"Patient/{pid}/_history"),
        "history-type": lambda: http.get("Patient/_history"),
        "history-system": lambda: http.get("_history"),
        "transaction": lambda: http.post("", json={"resourceType": "Bundle",
                                                   "type": "transaction",
                                                   "entry": [bundle_entry]}, headers=FHIR_JSON),
        "batch": lambda: http.post("", json={"resourceType": "Bundle", "type": "batch",
                                             "entry": [bundle_entry]}, headers=FHIR_JSON),
    }
    return await calls[kind]()


ACTIONS = {"read": "R", "vread": "R", "search-type": "R", "create": "C", "update": "U",
           "patch": "U", "delete": "D", "history-instance": "R", "history-type": "R",
           "history-system": "R", "transaction": "E", "batch": "E"}


@pytest.mark.parametrize("kind", KINDS)
async def test_one_event_per_interaction(app: FastAPI, client: httpx.AsyncClient,
                                         client_for: ClientFor, auditor: httpx.AsyncClient,
                                         kind: str) -> None:
    pid = await _patient(client)
    client_id = f"app-{uuid.uuid4().hex[:8]}"
    http = await client_for("system/*.cruds", client_id=client_id)
    resp = await _do(http, kind, pid)
    assert resp.status_code < 300, resp.text
    found = await _events(app, auditor, subtype=f"{INTERACTION}|{kind}",
                          **{"agent:identifier": f"{CLIENT_SYSTEM}|{client_id}"})
    assert len(found) == 1, found
    event = found[0]
    assert event["action"] == ACTIONS[kind]
    assert event["outcome"] == "0"
    assert event["type"]["code"] == "rest"
    agent = _client_agent(event)
    assert agent["who"]["identifier"]["value"] == client_id
    assert agent["network"]["address"]
    if kind in {"read", "vread", "update", "patch", "delete", "history-instance"}:
        assert f"Patient/{pid}" in _whats(event)
    if kind == "create":
        created = resp.headers["location"].split("/fhir/", 1)[1].split("/_history")[0]
        assert created in _whats(event)
    if kind == "search-type":
        query = next(e for e in event["entity"] if e["role"]["code"] == "24")
        assert base64.b64decode(query["query"]).decode() == "Patient?name"


async def test_every_kind_of_event_is_a_valid_r4_audit_event(
        app: FastAPI, client: httpx.AsyncClient, client_for: ClientFor,
        auditor: httpx.AsyncClient) -> None:
    """The trail writes its events without validating each (they are the server's own):
    the builders' output for every interaction, failures, users and operations must be
    valid R4 AuditEvents."""
    pid = await _patient(client)
    user = await client_for("user/*.cruds", username="ann", role="admin",
                            fhir_user="Practitioner/ann")
    for kind in KINDS:
        assert (await _do(user if kind == "read" else client, kind, pid)).status_code < 500
    assert (await (await client_for(None)).get(f"Patient/{pid}")).status_code == 401
    assert (await client.post("Coverage/no-such/$eligibility", json={
        "resourceType": "Parameters"})).status_code == 404
    events = await _events(app, auditor)
    assert len(events) >= len(KINDS) + 2
    for event in events:
        validate_resource(event, expected_type="AuditEvent", max_depth=64)  # raises if invalid


async def test_failures_are_audited(app: FastAPI, client: httpx.AsyncClient,
                                    client_for: ClientFor, auditor: httpx.AsyncClient) -> None:
    pid = await _patient(client)
    denied = await client_for("system/Observation.rs", client_id="no-patients")
    assert (await denied.get(f"Patient/{pid}")).status_code == 403
    lost = await client_for("system/*.rs", client_id="lost")
    assert (await lost.get("Patient/no-such-id")).status_code == 404
    anonymous = await client_for(None)
    assert (await anonymous.get(f"Patient/{pid}")).status_code == 401
    forbidden = await _events(app, auditor, **{"agent-name": "no-patients"})
    assert [(e["outcome"], e["outcomeDesc"]) for e in forbidden] == [("4", "HTTP 403")]
    assert f"Patient/{pid}" in _whats(forbidden[0])
    missing = await _events(app, auditor, **{"agent-name": "lost"})
    assert [(e["outcome"], e["outcomeDesc"]) for e in missing] == [("4", "HTTP 404")]
    anon = await _events(app, auditor, **{"agent-name": "anonymous"})
    assert [(e["outcome"], e["outcomeDesc"]) for e in anon] == [("4", "HTTP 401")]


async def test_user_agent_and_patient_entity(app: FastAPI, client: httpx.AsyncClient,
                                             client_for: ClientFor,
                                             auditor: httpx.AsyncClient) -> None:
    pid = await _patient(client)
    doc = await client_for("user/*.rs", client_id="ehr", username="dr-who", role="clinician",
                           fhir_user="Practitioner/dr-who-1")
    assert (await doc.get(f"Patient/{pid}")).status_code == 200
    by_user = await _events(app, auditor, agent="Practitioner/dr-who-1")
    assert len(by_user) == 1
    user = next(a for a in by_user[0]["agent"] if a.get("altId") == "dr-who")
    assert user["requestor"] is True and user["role"][0]["text"] == "clinician"
    assert (await _events(app, auditor, altid="dr-who")) == by_user
    app_user = await client_for("patient/*.rs", client_id="portal", patient=pid)
    assert (await app_user.get("Observation")).status_code == 200
    for_patient = await _events(app, auditor, patient=f"Patient/{pid}",
                                **{"agent-name": "portal"})
    assert len(for_patient) == 1


async def test_audit_scope_required_and_never_writable(
        app: FastAPI, client: httpx.AsyncClient, client_for: ClientFor,
        auditor: httpx.AsyncClient) -> None:
    await _patient(client)
    await app.state.audit.flush()
    assert (await client.get("AuditEvent")).status_code == 403  # system/*.cruds is not enough
    pid = await _patient(client)
    patient_app = await client_for("patient/*.rs", patient=pid)
    assert (await patient_app.get("AuditEvent")).status_code == 403
    clinician = await client_for("user/*.cruds", username="c", role="clinician")
    assert (await clinician.get("AuditEvent")).status_code == 403
    admin = await client_for("user/*.cruds", username="boss", role="admin")
    listing = await admin.get("AuditEvent")
    assert listing.status_code == 200 and listing.json()["total"] > 0
    one = listing.json()["entry"][0]["resource"]
    assert (await auditor.get(f"AuditEvent/{one['id']}")).status_code == 200
    for http in (admin, auditor, client):
        assert (await http.put(f"AuditEvent/{one['id']}", json=one,
                               headers=FHIR_JSON)).status_code == 405
        assert (await http.delete(f"AuditEvent/{one['id']}")).status_code == 405
        assert (await http.post("AuditEvent", json=one, headers=FHIR_JSON)).status_code == 405
    # The system history of a client without audit access leaves AuditEvents out.
    entries = (await client.get("_history", params={"_count": "1000"})).json()["entry"]
    assert not any("/AuditEvent/" in e["fullUrl"] for e in entries)


async def test_login_events(app: FastAPI, auditor: httpx.AsyncClient) -> None:
    await app.state.auth.emit_login(LoginEvent(success=False, client_id="web", username="eve",
                                               reason="wrong password", source="10.1.2.3"))
    await app.state.auth.emit_login(LoginEvent(success=True, client_id="web", username="eve",
                                               role="billing", source="10.1.2.3"))
    found = await _events(app, auditor, subtype=f"{DCM}|110122", altid="eve")
    assert sorted(e["outcome"] for e in found) == ["0", "4"]
    assert all(a["network"]["address"] == "10.1.2.3" for e in found for a in e["agent"])


async def test_events_are_written_without_an_explicit_flush(
        app: FastAPI, client_for: ClientFor, auditor: httpx.AsyncClient) -> None:
    http = await client_for("system/*.rs", client_id="timer")
    assert (await http.get("Patient")).status_code == 200
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        resp = await auditor.get("AuditEvent", params={"agent-name": "timer"})
        if resp.json().get("total"):
            break
        assert asyncio.get_running_loop().time() < deadline, "never written"
        await asyncio.sleep(0.2)


async def test_no_content_in_audit_or_logs(app: FastAPI, client: httpx.AsyncClient,
                                           auditor: httpx.AsyncClient,
                                           caplog: pytest.LogCaptureFixture) -> None:
    secret = f"Qzx{uuid.uuid4().hex[:10]}"
    caplog.set_level(logging.DEBUG)  # everything, the database driver's loggers included
    logging.getLogger("pymongo").setLevel(logging.NOTSET)
    quiet_driver_logs()  # what create_app does
    pid = await _patient(client, family=secret)
    assert (await client.get("Patient", params={"name": secret})).status_code == 200
    assert (await client.get("Patient", params={"family:exact": secret,
                                                "birthdate": "1970-01-01"})).status_code == 200
    assert (await client.get(f"Patient/{pid}")).status_code == 200
    await app.state.audit.flush()
    listing = await auditor.get("AuditEvent", params={"_count": "1000"})
    assert listing.json()["total"] >= 4
    assert secret not in listing.text
    assert "1970-01-01" not in listing.text.replace(listing.json()["meta"]["lastUpdated"], "")
    # The server's log (the test's own HTTP client, httpx, logs the URLs it requests).
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name.startswith("fhir_server") for r in server_records)
    assert all(secret not in r.getMessage() for r in server_records)
    # The fields the JSON and text log formats add (route, status, ids) carry none either.
    request_lines = [r for r in server_records if getattr(r, "route", None)]
    assert {r.__dict__["route"] for r in request_lines} >= {"/fhir/{type_}",
                                                           "/fhir/{type_}/{id_}"}
    for formatter in (JsonFormatter(), TextFormatter(TEXT_FORMAT)):
        for record in server_records:
            RequestIds().filter(record)
            line = formatter.format(record)
            assert secret not in line and "1970-01-01" not in line
