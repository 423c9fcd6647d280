"""Bulk Data export routes (system level, FHIR Bulk Data Access 2.0):

* ``GET [base]/$export?_type=A,B&_since=INSTANT`` with ``Prefer: respond-async``: 202 and
  ``Content-Location: [base]/$export-status/[job]``; the token must allow searching every
  type asked for (``system/`` or ``user/`` scopes: an export is not for a patient app);
* ``GET [base]/$export-status/[job]``: 202 with ``X-Progress`` while it runs, 200 with the
  manifest when done, 500 with an OperationOutcome when it failed; ``DELETE``: cancel;
* ``GET [base]/$export-file/[job]/[Type].ndjson``: the file (``application/fhir+ndjson``).

Status and files answer only the client that started the job (404 for others).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from adapters.records import records
from fhir_server.api.negotiation import check_accept, json_response
from fhir_server.auth.enforce import authorize, request_access
from fhir_server.errors import FhirError, Forbidden, Invalid, NotFound
from fhir_server.search.dates import date_range
from fhir_server.storage.model import instant, now_ms
from fhir_server.validation import require_type, resource_class
from operations import bulk_export

router = APIRouter()
JOB = re.compile(r"^[0-9a-f]{32}$")
FILE = re.compile(r"^([A-Z][A-Za-z]{1,63})\.ndjson$")


def _owner(request: Request) -> str:
    principal = request_access(request)[0].principal
    return principal.client_id if principal is not None else "-"


async def _job(request: Request, job: str) -> dict[str, Any]:
    record = await records(request.app.state.repo, "bulk-export").get(job) \
        if JOB.match(job) else None
    if record is None or record.get("owner") != _owner(request):
        raise NotFound("No such export job")
    return record


@router.get("/$export")
async def kick_off(request: Request) -> Response:
    await check_accept(request)
    if "respond-async" not in request.headers.get("prefer", ""):
        raise Invalid("A bulk export needs the header Prefer: respond-async",
                      expression=["Prefer"])
    access, scoped = request_access(request)
    if access.principal is not None and access.principal.patient:
        raise Forbidden("A system-level export is not open to patient-context tokens")
    params = request.query_params
    if params.get("_outputFormat", "application/fhir+ndjson") not in (
            "application/fhir+ndjson", "application/ndjson", "ndjson"):
        raise Invalid("_outputFormat must be application/fhir+ndjson",
                      expression=["_outputFormat"])
    types = [t for t in params.get("_type", "").split(",") if t]
    if not types:  # Bulk Data: all resources within the scope of the client's authorization
        types = [t for t in await scoped.types()
                 if resource_class(t) is not None and access.may(t, "s")]
    for type_ in types:
        require_type(type_)
        await authorize(request, type_=type_, interaction="s")
    since = params.get("_since")
    if since:
        try:
            date_range(since)
        except FhirError:
            raise Invalid("_since must be a FHIR instant", expression=["_since"]) from None
    settings, job = request.app.state.settings, uuid.uuid4().hex
    jobs = records(request.app.state.repo, "bulk-export")
    await jobs.put(job, {"owner": _owner(request), "state": "running",
                         "transactionTime": instant(now_ms()), "request": str(request.url)})
    task = asyncio.create_task(bulk_export.run_job(
        repo=scoped, settings=settings, jobs=jobs, job=job, types=types, since=since,
        file_base=f"{settings.base_url}/$export-file"), name=f"bulk-export-{job}")
    bulk_export.RUNNING[job] = task
    task.add_done_callback(lambda _: bulk_export.RUNNING.pop(job, None))
    return Response(status_code=202, headers={
        "Content-Location": f"{settings.base_url}/$export-status/{job}"})


@router.get("/$export-status/{job}")
async def status(job: str, request: Request) -> Response:
    record = await _job(request, job)
    state = record.get("state")
    if state == "running":
        return Response(status_code=202, headers={"X-Progress": "exporting",
                                                  "Retry-After": "1"})
    if state == "done":
        return json_response(bulk_export.manifest(record))
    raise NotFound("The export job was cancelled") if state == "cancelled" else FhirError(
        500, "exception", f"The export failed: {record.get('message', 'unknown')}")


@router.delete("/$export-status/{job}")
async def delete(job: str, request: Request) -> Response:
    await _job(request, job)
    await bulk_export.cancel(request.app.state.settings,
                             records(request.app.state.repo, "bulk-export"), job)
    return Response(status_code=202)


@router.get("/$export-file/{job}/{name}")
async def file(job: str, name: str, request: Request) -> Response:
    record = await _job(request, job)
    match = FILE.match(name)
    path = bulk_export.job_dir(request.app.state.settings, job) / name
    if record.get("state") != "done" or not match or not path.is_file():
        raise NotFound("No such export file")
    return FileResponse(path, media_type="application/fhir+ndjson")
