"""``POST [base]``: transaction and batch Bundles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from fhir_server.api.bundles import searchset_bundle
from fhir_server.api.deps import RepoDep, SettingsDep
from fhir_server.api.negotiation import json_response, pretty, read_body
from fhir_server.api.responses import etag_matches
from fhir_server.auth.access import Access
from fhir_server.auth.enforce import request_access
from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError, Invalid
from fhir_server.core.fhirjson import loads_stored
from fhir_server.core.models import resource_class
from fhir_server.search.dates import date_range
from fhir_server.service import bundles
from fhir_server.service import interactions as svc
from fhir_server.service.search.engine import parse_request, run_search
from fhir_server.storage.model import StoredVersion
from fhir_server.storage.repository import Repository

router = APIRouter()


def entry_letter(e: bundles.Entry) -> str:
    """The SMART letter an entry needs: GET by id r, GET search s, POST c, PUT/PATCH u, DELETE d."""
    if e.method in ("GET", "HEAD"):
        return "s" if e.id_ is None else "r"
    return {"POST": "c", "DELETE": "d"}.get(e.method, "u")


def _check_entries(access: Access, entries: list[bundles.Entry], *, transaction: bool) -> None:
    """Type-level checks of every entry before anything runs.

    A transaction with any entry the token does not permit fails as a whole (403
    naming the entry); in a batch, that entry alone answers 403.
    """
    for e in entries:
        if resource_class(e.type_) is None:
            continue  # processing answers the unknown type
        try:
            access.require(e.type_, entry_letter(e), where=f"Bundle.entry[{e.index}]")
        except FhirError as error:
            if transaction:
                raise
            e.response = {"status": str(error.status), "outcome": error.outcome()}


def _get_answerer(repo: Repository, settings: Settings,  # type: ignore[no-untyped-def]
                  access: Access | None = None):
    """Answers GET entries: read, vread or a type search."""

    async def answer(e: bundles.Entry) -> None:
        try:
            if access is not None and resource_class(e.type_) is not None:
                access.require(e.type_, entry_letter(e), where=f"Bundle.entry[{e.index}]")
            if e.id_ is None:
                req = parse_request(e.type_, e.query, settings, lenient=False)
                result = await run_search(repo=repo, settings=settings, req=req)
                resource: Any = searchset_bundle(base_url=settings.base_url,
                                                 matches=result.matches,
                                                 included=result.included, total=result.total,
                                                 links={})
            else:
                parts = e.url.split("?")[0].strip("/").split("/")
                if len(parts) not in (2, 4) or (len(parts) == 4 and parts[2] != "_history"):
                    raise Invalid(f"This GET of {e.type_} is not supported in a Bundle; read, "
                                  "vread and type searches are")
                stored = (await svc.vread(repo=repo, type_=e.type_, id_=e.id_, version=parts[3])
                          if len(parts) == 4 and parts[2] == "_history"
                          else await svc.read(repo=repo, type_=e.type_, id_=e.id_))
                if _not_modified(e.request, stored):
                    e.response = {"status": "304 Not Modified", "etag": stored.etag}
                    return
                resource = loads_stored(stored.text or "{}")
                e.response = {"etag": stored.etag}
            e.response = {"status": "200 OK", **e.response, "resource": resource}
        except FhirError as error:
            e.response = {"status": str(error.status), "outcome": error.outcome()}

    return answer


def _not_modified(request: dict[str, Any], stored: StoredVersion) -> bool:
    """Entry-level conditional read: ifNoneMatch names this version, or nothing changed since."""
    if etag_matches(request.get("ifNoneMatch"), stored):
        return True
    since = request.get("ifModifiedSince")
    if since:
        try:
            low, _ = date_range(str(since), param="ifModifiedSince")
        except FhirError:
            return False
        return stored.last_updated < low + timedelta(seconds=1) if "." not in str(since) \
            else stored.last_updated <= low
    return False


@router.post("")
@router.post("/")
async def transaction_or_batch(request: Request, repo: RepoDep,
                               settings: SettingsDep) -> Response:
    bundle = await read_body(request)
    entries = bundles.parse_entries(bundle, settings)
    request.state.bundle_type = bundle["type"]  # the audit trail's subtype
    access, _ = request_access(request)
    _check_entries(access, entries, transaction=bundle["type"] == "transaction")
    run = bundles.run_transaction if bundle["type"] == "transaction" else bundles.run_batch
    await run(repo=repo, settings=settings, entries=entries,
              answer_get=_get_answerer(repo, settings, access))
    return json_response(bundles.response_bundle(bundle["type"], entries, settings.base_url),
                         pretty_print=pretty(request))
