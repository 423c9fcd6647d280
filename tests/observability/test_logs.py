"""FHIR_LOG_FORMAT=json: a server process's log is one JSON object per line, every line
with its request and trace ids, request lines with route, status and duration; never a
resource's content, a query value or a token."""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.observability.logs import REQUEST_ID, TRACE_ID, JsonFormatter, TextFormatter
from tests.factories import patient
from tests.support.server_process import server_process
from tests.support.store import HTTP_TIMEOUT, Store, mint_for_database

FIELDS = {"time", "level", "logger", "message", "request_id", "trace_id"}
REQUEST_FIELDS = {"method", "route", "status", "duration_ms"}


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines, "the server wrote no log"
    return [json.loads(line) for line in lines]  # each line alone is one JSON object


@pytest.mark.slow
@pytest.mark.process
async def test_the_json_log_of_a_run(store: Store, tmp_path: Path) -> None:
    secret, born = f"Qzx{uuid.uuid4().hex[:10]}", "1961-07-23"
    caller_rid, trace = "caller-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    log_file = tmp_path / "server.log"
    with server_process(store, log=log_file, FHIR_LOG_FORMAT="json", FHIR_LOG_LEVEL="INFO") as run:
        token = await mint_for_database(store, run.base)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        async with httpx.AsyncClient(base_url=run.base + "/", headers=headers,
                                     timeout=HTTP_TIMEOUT) as http:
            created = await http.post("Patient", json={**patient(family=secret),
                                                       "birthDate": born})
            assert created.status_code == 201, created.text
            pid = created.json()["id"]
            found = await http.get("Patient", params={"family": secret, "birthdate": born})
            assert found.status_code == 200 and found.json()["total"] == 1
            read = await http.get(f"Patient/{pid}", headers={"X-Request-Id": caller_rid})
            assert read.headers["x-request-id"] == caller_rid
            missing = await http.get("Patient/no-such-one",
                                     headers={"traceparent": f"00-{trace}-{'b' * 16}-01"})
            assert missing.status_code == 404
            refused = await http.post("Patient", json={**patient(family=secret),
                                                       "gender": secret})
            assert refused.status_code == 400
    assert run.exit_code == 0

    records = json_lines(log_file)
    text = log_file.read_text()
    for forbidden in (secret, born, token):
        assert forbidden not in text
    for record in records:
        assert set(record) >= FIELDS, record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", record["time"])
    requests = [r for r in records if r["message"].startswith("request ")]
    assert len(requests) >= 5
    for record in requests:
        assert set(record) >= REQUEST_FIELDS, record
        assert record["request_id"] and isinstance(record["duration_ms"], float)
        assert pid not in record["route"]
        assert "{" in record["route"] or not record["route"].startswith("/fhir/"), record
    by_rid = {r["request_id"]: r for r in requests}
    mine = by_rid[caller_rid]
    assert (mine["method"], mine["route"], mine["status"]) == ("GET", "/fhir/{type_}/{id_}", 200)
    traced = next(r for r in requests if r["status"] == 404)
    assert traced["trace_id"] == trace
    statuses = sorted(r["status"] for r in requests if r["route"].startswith("/fhir/"))
    assert statuses.count(201) == 1 and statuses.count(400) == 1
    # Lines outside a request (start-up, shutdown) have no ids.
    assert any(r["request_id"] is None for r in records)


def _record_with_error(message: str) -> logging.LogRecord:
    try:
        raise ValueError(message)
    except ValueError:
        return logging.LogRecord("fhir_server", logging.ERROR, __file__, 1, "failed",
                                 None, sys.exc_info())


def test_an_exception_is_logged_by_type_and_stack_never_its_message() -> None:
    secret = f"Qzx{uuid.uuid4().hex[:10]}"
    record = _record_with_error(f"Patient {secret} born 1961-07-23")
    rid, trace = REQUEST_ID.set("rid-1"), TRACE_ID.set("a" * 32)
    try:
        as_json = json.loads(JsonFormatter().format(record))
        as_text = TextFormatter("%(message)s").format(record)
    finally:
        REQUEST_ID.reset(rid)
        TRACE_ID.reset(trace)
    assert as_json["error"] == "ValueError" and "test_logs.py" in as_json["stack"]
    assert (as_json["request_id"], as_json["trace_id"]) == ("rid-1", "a" * 32)
    assert "error=ValueError" in as_text
    for out in (json.dumps(as_json), as_text):
        assert secret not in out and "1961-07-23" not in out


async def test_a_request_id_that_could_forge_a_log_line_is_replaced(
        client: httpx.AsyncClient, caplog: Any) -> None:
    forged = "abc status=200 level=ERROR msg=fake"
    caplog.set_level(logging.INFO, logger="fhir_server")
    kept = ("kept-id_1.2:3", "x" * 65)
    for sent in (forged, 'quo"te', "a\tb", *kept):
        r = await client.get("metadata", headers={"X-Request-Id": sent})
        assert r.status_code == 200
        answered = r.headers["x-request-id"]
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", answered), answered
        assert (answered == sent[:64]) == (sent in kept)
    text = "\n".join(TextFormatter().format(record) for record in caplog.records)
    assert "msg=fake" not in text and 'quo"te' not in text
