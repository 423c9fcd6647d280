"""Bulk Data export (FHIR Bulk Data Access 2.0, system level): the job behind
``GET [base]/$export`` (``fhir_server/api/bulk.py``).

A kick-off records a job (``adapters/records.py``: its owner, request, transaction
time, state) and runs it in the background: for each type of ``_type``, the resources
updated at or after ``_since`` that the caller's token may search are written as one
NDJSON file under ``FHIR_DATA_DIR/bulk-export/[job]/``; the job then records its
manifest (``transactionTime``, ``request``, ``requiresAccessToken``, ``output``,
``error``). Status and files are served to the client that started the job, by any
process that shares the data directory and the database.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

from adapters.records import Records
from fhir_server import interactions as svc
from fhir_server.config import Settings
from fhir_server.errors import FhirError
from fhir_server.fhirjson import dumps
from fhir_server.storage.model import instant, now_ms

log = logging.getLogger("operations.bulk_export")
RUNNING: dict[str, asyncio.Task[None]] = {}  # this process's jobs, for cancelling


def job_dir(settings: Settings, job: str) -> Path:
    return settings.fhir_data_dir / "bulk-export" / job


async def run_job(*, repo: Any, settings: Settings, jobs: Records, job: str,
                  types: list[str], since: str | None, file_base: str) -> None:
    """Write every type's file, then the manifest (``state`` done, or failed)."""
    record = await jobs.get(job) or {}
    folder = job_dir(settings, job)
    folder.mkdir(parents=True, exist_ok=True)
    output, errors = [], []
    try:
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
            path = folder / f"{type_}.ndjson"
            await asyncio.to_thread(path.write_bytes, b"".join(dumps(r) + b"\n" for r in found))
            output.append({"type": type_, "url": f"{file_base}/{job}/{type_}.ndjson",
                           "count": len(found)})
        error_files = []
        if errors:
            outcome = [{"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "too-costly", "diagnostics": e}]} for e in errors]
            await asyncio.to_thread((folder / "OperationOutcome.ndjson").write_bytes,
                                    b"".join(dumps(o) + b"\n" for o in outcome))
            error_files = [{"type": "OperationOutcome",
                            "url": f"{file_base}/{job}/OperationOutcome.ndjson"}]
        record.update(state="done", output=output, error=error_files)
    except FhirError as error:
        record.update(state="failed", message=error.diagnostics)
    except Exception as exc:
        log.error("bulk export failed job=%s error=%s", job, type(exc).__name__)
        record.update(state="failed", message="internal error")
    record["finished"] = instant(now_ms())
    await jobs.put(job, record)


def manifest(record: dict[str, Any]) -> dict[str, Any]:
    return {"transactionTime": record["transactionTime"], "request": record["request"],
            "requiresAccessToken": True,
            "output": [{"type": o["type"], "url": o["url"]} for o in record.get("output", [])],
            "error": record.get("error", [])}


async def cancel(settings: Settings, jobs: Records, job: str) -> None:
    task = RUNNING.pop(job, None)
    if task is not None:
        task.cancel()
    record = await jobs.get(job) or {}
    record["state"] = "cancelled"
    await jobs.put(job, record)
    await asyncio.to_thread(shutil.rmtree, job_dir(settings, job), True)
