"""A Bulk Data export job belongs to the client AND the user that started it; its files are
private (0600 in 0700 folders), expire after FHIR_EXPORT_RETENTION, are audited by job and
type, and its id stays out of the log."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.audit.events import EXPORT_JOB_SYSTEM
from fhir_server.operations.bulk_export import job_dir, job_records
from fhir_server.operations.bulk_export_retention import STARTING, sweep
from fhir_server.storage.private import private_dir
from tests.api.test_bulk_export import ASYNC, finished
from tests.factories import patient
from tests.support.store import ClientFor

EHR_APP = "ehr-app"


async def _export(http: httpx.AsyncClient, type_: str = "Patient") -> tuple[str, dict[str, Any]]:
    r = await http.get("$export", params={"_type": type_}, headers=ASYNC)
    assert r.status_code == 202, r.text
    status_url = r.headers["content-location"]
    done = await finished(http, status_url)
    assert done.status_code == 200, done.text
    return status_url, done.json()


def _job_of(status_url: str) -> str:
    return status_url.rsplit("/", 1)[1]


async def test_another_user_of_the_same_app_gets_404(client: httpx.AsyncClient,
                                                     client_for: ClientFor) -> None:
    made = (await client.post("Patient", json=patient(family="Owned"))).json()
    admin = await client_for("user/Patient.rs", client_id=EHR_APP, username="ann", role="admin")
    desk = await client_for("user/Patient.rs", client_id=EHR_APP, username="bob",
                            role="front-desk")
    status_url, manifest = await _export(admin)
    [output] = manifest["output"]
    for http in (desk, await client_for("system/Patient.rs", client_id=EHR_APP)):
        for url in (status_url, output["url"]):
            refused = await http.get(url)
            assert refused.status_code == 404, url
            assert refused.json()["resourceType"] == "OperationOutcome"
        assert (await http.delete(status_url)).status_code == 404
    text = (await admin.get(output["url"])).text
    assert made["id"] in {json.loads(line)["id"] for line in text.splitlines()}


async def test_files_are_private(app: FastAPI, client: httpx.AsyncClient) -> None:
    await client.post("Patient", json=patient())
    status_url, _ = await _export(client)
    folder = job_dir(app.state.settings, _job_of(status_url))
    written = [folder.parent, folder, *folder.iterdir()]
    assert len(written) == 3  # the export folder, the job's, Patient.ndjson
    loose = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in written
             if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert loose == {}


RETENTION = 2  # seconds


@pytest.mark.slow
@pytest.mark.parametrize("settings_overrides", [{"fhir_export_retention": RETENTION}])
async def test_jobs_expire_and_are_swept(app: FastAPI, client: httpx.AsyncClient) -> None:
    await client.post("Patient", json=patient())
    status_url, manifest = await _export(client)
    job = _job_of(status_url)
    ended = time.time()
    folder = job_dir(app.state.settings, job)
    assert (await client.get(manifest["output"][0]["url"])).status_code == 200
    while folder.exists() and time.time() - ended < RETENTION + 30:
        await asyncio.sleep(0.2)
    assert time.time() - ended >= RETENTION - 0.5  # not deleted before its time
    assert not folder.exists()
    assert await job_records(app.state.repo).get(job) is None
    for url in (status_url, manifest["output"][0]["url"]):
        gone = await client.get(url)
        assert gone.status_code == 404
        assert gone.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("settings_overrides", [{"fhir_export_retention": RETENTION}])
async def test_an_expired_job_answers_404_before_the_sweep(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    await client.post("Patient", json=patient())
    status_url, manifest = await _export(client)
    jobs = job_records(app.state.repo)
    record = await jobs.get(_job_of(status_url))
    assert record is not None
    await jobs.put(_job_of(status_url), {**record, "exp": time.time() - 1})
    for url in (status_url, manifest["output"][0]["url"]):
        gone = await client.get(url)
        assert gone.status_code == 404
        assert "expired" in gone.json()["issue"][0]["diagnostics"]


async def test_a_file_download_is_audited_with_job_and_type(
        app: FastAPI, client: httpx.AsyncClient, client_for: ClientFor) -> None:
    await client.post("Patient", json=patient())
    await client.post("Organization", json={"resourceType": "Organization", "name": "Clinic"})
    status_url, manifest = await _export(client, "Patient,Organization")
    job = _job_of(status_url)
    for output in manifest["output"]:
        assert (await client.get(output["url"])).status_code == 200
    other = await client_for("system/Patient.rs", client_id="another-app")
    assert (await other.get(manifest["output"][0]["url"])).status_code == 404
    await app.state.audit.flush()
    auditor = await client_for("system/AuditEvent.rs", client_id="auditor")
    found = await auditor.get("AuditEvent", params={"_count": "1000"})
    downloads = []
    for entry in found.json().get("entry", []):
        event = entry["resource"]
        for entity in event.get("entity", []):
            if entity.get("what", {}).get("identifier", {}).get("system") == EXPORT_JOB_SYSTEM:
                detail = {d["valueString"] for d in entity.get("detail", [])}
                downloads.append((entity["what"]["identifier"]["value"], frozenset(detail),
                                  event["outcome"]))
    expected = {(job, frozenset({o["type"]}), "0") for o in manifest["output"]}
    expected.add((job, frozenset({manifest["output"][0]["type"]}), "4"))  # the refusal
    assert expected <= set(downloads)
    assert (job, frozenset(), "0") in downloads  # the status requests


async def test_job_ids_stay_out_of_the_log(client: httpx.AsyncClient,
                                           caplog: pytest.LogCaptureFixture) -> None:
    await client.post("Patient", json=patient())
    with caplog.at_level(logging.INFO):
        status_url, manifest = await _export(client)
        assert (await client.get(manifest["output"][0]["url"])).status_code == 200
        assert (await client.delete(status_url)).status_code == 202
    lines = [r.getMessage() for r in caplog.records  # the server's, not the test client's
             if r.name.split(".")[0] in ("fhir_server", "operations", "uvicorn")]
    assert any("$export-file/{job}/{name}" in line for line in lines), lines
    assert not [line for line in lines if _job_of(status_url) in line]



async def test_the_sweep_spares_a_job_whose_record_is_being_written(app: FastAPI) -> None:
    """A kick-off makes its folder, then its record: a sweep in between (this process's or
    another's) must not take the folder for a cancelled job's; an old one without a record
    is a cancelled job's, and goes."""
    settings = app.state.settings
    jobs = job_records(app.state.repo)
    starting, cancelled = (job_dir(settings, uuid.uuid4().hex) for _ in range(2))
    for folder in (starting, cancelled):
        private_dir(private_dir(folder.parent) / folder.name)
    long_ago = time.time() - STARTING - 5
    os.utime(cancelled, (long_ago, long_ago))
    assert await sweep(settings=settings, jobs=jobs) == 1
    assert starting.exists() and not cancelled.exists()
