"""Bulk Data export routes (system level, FHIR Bulk Data Access 2.0):

* ``GET [base]/$export?_type=A,B&_since=INSTANT`` with ``Prefer: respond-async``: 202 and
  ``Content-Location: [base]/$export-status/[job]``; the token must allow searching every
  type asked for (``system/`` or ``user/`` scopes: an export is not for a patient app);
* ``GET [base]/$export-status/[job]``: 202 with ``X-Progress`` while it runs, 200 with the
  manifest when done, 500 with an OperationOutcome when it failed; ``DELETE``: cancel;
* ``GET [base]/$export-file/[job]/[Type].ndjson``: the file (``application/fhir+ndjson``).

Status and files answer only the client and user that started the job, until it expires
(``FHIR_EXPORT_RETENTION``); 404 for anyone else, and after. A file download's AuditEvent
names the job and the file's type.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from fhir_server.api.negotiation import check_accept, json_response
from fhir_server.audit.events import export_entity
from fhir_server.auth.enforce import authorize, request_access
from fhir_server.core.errors import FhirError, Forbidden, Invalid, NotFound
from fhir_server.core.models import require_type, resource_class
from fhir_server.operations import bulk_export
from fhir_server.search.dates import date_range

router = APIRouter()
FILE = re.compile(r"^([A-Z][A-Za-z]{1,63})\.ndjson$")


async def _job(request: Request, job: str, type_: str | None = None) -> dict[str, Any]:
    """The caller's own unexpired job (404 otherwise). The request's AuditEvent names the
    job (and the file's type), also when it is refused."""
    if not bulk_export.JOB.match(job):
        raise NotFound("No such export job")
    request.state.audit_entities = [export_entity(job, type_)]
    record = await bulk_export.job_records(request.app.state.repo).get(job)
    principal = request_access(request)[0].principal
    if record is None or record.get("owner") != bulk_export.owner_of(principal):
        raise NotFound("No such export job")
    if bulk_export.expired(record):
        raise NotFound("The export job has expired (FHIR_EXPORT_RETENTION)")
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
    await bulk_export.start(repo=scoped, settings=settings,
                            jobs=bulk_export.job_records(request.app.state.repo), job=job,
                            principal=access.principal, request=str(request.url), types=types,
                            since=since)
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
    raise FhirError(500, "exception", f"The export failed: {record.get('message', 'unknown')}")


@router.delete("/$export-status/{job}")
async def delete(job: str, request: Request) -> Response:
    await _job(request, job)
    await bulk_export.remove(request.app.state.settings,
                             bulk_export.job_records(request.app.state.repo), job)
    return Response(status_code=202)


@router.get("/$export-file/{job}/{name}")
async def file(job: str, name: str, request: Request) -> Response:
    match = FILE.match(name)
    record = await _job(request, job, match.group(1) if match else None)
    path = bulk_export.job_dir(request.app.state.settings, job) / name
    if record.get("state") != "done" or not match or not path.is_file():
        raise NotFound("No such export file")
    return FileResponse(path, media_type="application/fhir+ndjson")
