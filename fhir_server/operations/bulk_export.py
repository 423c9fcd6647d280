"""Bulk Data export (FHIR Bulk Data Access 2.0, system level): the job behind
``GET [base]/$export`` (``fhir_server/api/bulk.py``).

A kick-off records a job (``fhir_server/adapters/records.py``: its owner, request, transaction
time, state, expiry) and runs it in the background: for each type of ``_type``, the
resources updated at or after ``_since`` that the caller's token may search are written
as one NDJSON file under ``FHIR_DATA_DIR/bulk-export/[job]/`` (folders 0700, files 0600);
the job then records its manifest (``transactionTime``, ``request``,
``requiresAccessToken``, ``output``, ``error``).

A job belongs to whoever started it: the client AND the user its token was issued for
(``owner``); status and files are served to that owner alone, by any process that shares
the data directory and the database. ``FHIR_EXPORT_RETENTION`` seconds after the job
ends (or begins, while it runs), it expires: its URLs answer 404 and
``bulk_export_retention.sweep`` deletes its files and its record.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

from fhir_server.adapters.records import Records, records
from fhir_server.auth.principal import Principal
from fhir_server.core.cancel import cancel_requested
from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.core.fhirjson import dumps
from fhir_server.service import interactions as svc
from fhir_server.storage.model import instant, now_ms
from fhir_server.storage.private import private_dir, write_private

log = logging.getLogger("fhir_server.operations.bulk_export")
RUNNING: dict[str, asyncio.Task[None]] = {}  # this process's jobs, for cancelling
_APP: dict[str, int] = {}  # job -> id of the Settings of the app that runs it
FOLDER = "bulk-export"
JOB = re.compile(r"^[0-9a-f]{32}$")  # a job id (uuid4 hex)


def job_records(repo: Any) -> Records:
    """Where the jobs are recorded, in the repository's database."""
    return records(repo, FOLDER)


def export_root(settings: Settings) -> Path:
    return settings.fhir_data_dir / FOLDER


def job_dir(settings: Settings, job: str) -> Path:
    return export_root(settings) / job


def owner_of(principal: Principal | None) -> dict[str, str | None]:
    """Who a job belongs to: the client and the user (None: a backend client's own token;
    ``-``: FHIR_AUTH=off)."""
    if principal is None:
        return {"client": "-", "user": None}
    return {"client": principal.client_id, "user": principal.username}


def expiry(settings: Settings) -> float:
    """When a job ending (or starting) now expires, epoch seconds."""
    return time.time() + settings.fhir_export_retention


def expired(record: dict[str, Any]) -> bool:
    exp = record.get("exp")
    return not isinstance(exp, int | float) or exp <= time.time()


async def start(*, repo: Any, settings: Settings, jobs: Records, job: str,
                principal: Principal | None, request: str, types: list[str],
                since: str | None) -> None:
    """Record the job (its folder first, so the sweep finds every record by its folder) and
    run it in the background."""
    await asyncio.to_thread(lambda: private_dir(private_dir(export_root(settings)) / job))
    await jobs.put(job, {"owner": owner_of(principal), "state": "running",
                         "transactionTime": instant(now_ms()), "request": request,
                         "exp": expiry(settings)})
    task = asyncio.create_task(run_job(
        repo=repo, settings=settings, jobs=jobs, job=job, types=types, since=since,
        file_base=f"{settings.base_url}/$export-file"), name="bulk-export")
    RUNNING[job], _APP[job] = task, id(settings)
    task.add_done_callback(lambda _: (RUNNING.pop(job, None), _APP.pop(job, None)))


async def stop_jobs(settings: Settings, jobs: Records) -> None:
    """At shutdown, before the database closes: cancel the app's running jobs, wait for them,
    and record them failed, so that no job writes to a closed database and none stays
    ``running`` until it expires."""
    mine = {job: task for job, task in list(RUNNING.items()) if _APP.get(job) == id(settings)}
    for task in mine.values():
        task.cancel()
    await asyncio.gather(*mine.values(), return_exceptions=True)
    for job in mine:
        record = await jobs.get(job)
        if record is not None and record.get("state") == "running":
            record.update(state="failed", message="the server stopped before the export "
                          "finished; start it again", finished=instant(now_ms()),
                          exp=expiry(settings))
            await jobs.put(job, record)


async def _write(folder: Path, name: str, lines: list[dict[str, Any]]) -> None:
    await asyncio.to_thread(write_private, folder / name, b"".join(dumps(r) + b"\n"
                                                                   for r in lines))


async def _export(*, repo: Any, settings: Settings, job: str, types: list[str],
                  since: str | None, file_base: str) -> dict[str, Any]:
    """Write every type's file; the manifest's ``output`` and ``error``."""
    folder = job_dir(settings, job)
    output, errors = [], []
    for type_ in types:
        criteria = [("_lastUpdated", f"ge{since}")] if since else []
        found = await svc.find_resources(repo=repo, settings=settings, type_=type_,
                                         criteria=criteria,
                                         limit=settings.fhir_search_max_results + 1)
        if len(found) > settings.fhir_search_max_results:
            errors.append(f"{type_}: more than FHIR_SEARCH_MAX_RESULTS resources; export "
                          "it in parts with _since")
            continue
        if not found:
            continue
        await _write(folder, f"{type_}.ndjson", found)
        output.append({"type": type_, "url": f"{file_base}/{job}/{type_}.ndjson",
                       "count": len(found)})
    error_files = []
    if errors:
        await _write(folder, "OperationOutcome.ndjson", [
            {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "too-costly", "diagnostics": e}]} for e in errors])
        error_files = [{"type": "OperationOutcome",
                        "url": f"{file_base}/{job}/OperationOutcome.ndjson"}]
    return {"state": "done", "output": output, "error": error_files}


async def run_job(*, repo: Any, settings: Settings, jobs: Records, job: str,
                  types: list[str], since: str | None, file_base: str) -> None:
    """Write every type's file, then the manifest (``state`` done, or failed)."""
    try:
        outcome = await _export(repo=repo, settings=settings, job=job, types=types,
                                since=since, file_base=file_base)
    except FhirError as error:
        outcome = {"state": "failed", "message": error.diagnostics}
    except Exception as exc:
        if cancel_requested():  # a cancel the driver turned into an error
            raise asyncio.CancelledError from exc
        log.error("bulk export failed error=%s", type(exc).__name__)
        outcome = {"state": "failed", "message": "internal error"}
    record = await jobs.get(job)
    if record is None:  # cancelled (or expired) meanwhile, maybe by another process
        await asyncio.to_thread(shutil.rmtree, job_dir(settings, job), True)
        return
    record.update(outcome, finished=instant(now_ms()), exp=expiry(settings))
    await jobs.put(job, record)


def manifest(record: dict[str, Any]) -> dict[str, Any]:
    return {"transactionTime": record["transactionTime"], "request": record["request"],
            "requiresAccessToken": True,
            "output": [{"type": o["type"], "url": o["url"]} for o in record.get("output", [])],
            "error": record.get("error", [])}


async def remove(settings: Settings, jobs: Records, job: str) -> None:
    """Cancel the job if it runs here, and delete its record and files."""
    task = RUNNING.pop(job, None)
    if task is not None:
        task.cancel()
    await jobs.delete(job)
    await asyncio.to_thread(shutil.rmtree, job_dir(settings, job), True)
