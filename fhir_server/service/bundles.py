"""Transaction and batch Bundles (``POST [base]``), following the R4 HTTP page.

A transaction resolves its ``urn:uuid:``/``urn:oid:`` fullUrls and conditional
references, rewrites every reference to them, validates and plans every write,
and commits them all or nothing (``Repository.commit_transaction``: one SQLite
transaction, or the staged protocol of ``storage/mongo/transactions.py``); GET entries are
answered afterwards, so they see the transaction's state. A batch runs each entry
on its own through the ordinary interactions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_server.core.config import Settings
from fhir_server.core.errors import (
    Conflict,
    FhirError,
    Invalid,
    Issue,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    operation_outcome,
)
from fhir_server.core.fhirjson import loads_stored
from fhir_server.core.models import check_id, require_type
from fhir_server.service import interactions as svc
from fhir_server.service import write_rules as rules
from fhir_server.service.bundle_references import conditional_references, rewritten
from fhir_server.service.validation import validate_resource
from fhir_server.storage.model import StoredVersion, instant, now_ms
from fhir_server.storage.repository import PlannedWrite, Repository, TransactionConflict

log = logging.getLogger("fhir_server.service.bundles")
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    index: int
    method: str
    url: str
    type_: str
    id_: str | None
    query: list[tuple[str, str]]
    resource: dict[str, Any] | None
    request: dict[str, Any]
    full_url: str | None
    response: dict[str, Any] = field(default_factory=dict)
    stored: StoredVersion | None = None
    assigned_id: bool = False  # a conditional PUT matching nothing: the server chose the id


def _where(index: int) -> str:
    return f"Bundle.entry[{index}]"


def _fail(error: FhirError, index: int) -> FhirError:
    """The same error, naming the entry."""
    error.diagnostics = f"{_where(index)}: {error.diagnostics}"
    error.expression = [_where(index), *error.expression]
    return error


def parse_entries(bundle: dict[str, Any], settings: Settings) -> list[Entry]:
    if bundle.get("resourceType") != "Bundle":
        raise Invalid("POST [base] takes a Bundle", expression=["resourceType"])
    if bundle.get("type") not in ("transaction", "batch"):
        raise Invalid("Bundle.type must be transaction or batch", expression=["Bundle.type"])
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise Invalid("Bundle.entry must be an array", expression=["Bundle.entry"])
    if len(raw) > settings.fhir_bundle_max_entries:
        raise PayloadTooLarge(f"The Bundle has {len(raw)} entries; this server takes at most "
                              f"{settings.fhir_bundle_max_entries}", expression=["Bundle.entry"])
    return [_entry(i, e) for i, e in enumerate(raw)]


def _entry(i: int, raw: Any) -> Entry:
    request = raw.get("request") if isinstance(raw, dict) else None
    if not isinstance(request, dict) or not isinstance(request.get("method"), str) or \
            not isinstance(request.get("url"), str) or not request["url"]:
        raise Invalid(f"{_where(i)} needs request.method and request.url",
                      expression=[f"{_where(i)}.request"])
    method = str(request["method"]).upper()
    if method not in ORDER:
        raise Invalid(f"{_where(i)}: method {method[:10]} is not supported",
                      expression=[f"{_where(i)}.request.method"])
    parts = urlsplit(str(request["url"]))
    path = parts.path.strip("/")
    segments = path.split("/") if path else []
    type_ = segments[0] if segments else ""
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise Invalid(f"{_where(i)}.fullUrl must be a string", expression=[f"{_where(i)}.fullUrl"])
    for name in ("ifMatch", "ifNoneMatch", "ifNoneExist", "ifModifiedSince"):
        if name in request and not isinstance(request[name], str):
            raise Invalid(f"{_where(i)}.request.{name} must be a string",
                          expression=[f"{_where(i)}.request.{name}"])
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise Invalid(f"{_where(i)}.resource must be an object",
                      expression=[f"{_where(i)}.resource"])
    return Entry(index=i, method=method, url=str(request["url"]), type_=type_,
                 id_=segments[1] if len(segments) > 1 else None,
                 query=parse_qsl(parts.query, keep_blank_values=True), resource=resource,
                 request=request, full_url=full_url)


async def _resolve_conditional(repo: Repository, settings: Settings, ref: str) -> str:
    type_, _, query = ref.partition("?")
    require_type(type_)
    ids = await svc.find_matches(repo=repo, settings=settings, type_=type_,
                                 criteria=parse_qsl(query, keep_blank_values=True))
    if len(ids) != 1:
        raise PreconditionFailed(f"Conditional reference {type_}?... matches {len(ids)} "
                                 "resources; it must match exactly one")
    return f"{type_}/{ids[0]}"


Handler = Callable[[Entry], Awaitable[None]]


@dataclass
class Plan:
    """What a transaction will write, entry by entry."""

    writes: list[PlannedWrite] = field(default_factory=list)
    entry_of_write: list[int] = field(default_factory=list)
    targets: set[str] = field(default_factory=set)


def _status(code: int) -> str:
    return {200: "200 OK", 201: "201 Created", 204: "204 No Content"}.get(code, str(code))


async def _identify(repo: Repository, settings: Settings, e: Entry, deleted: set[str]) -> None:
    """Give every write entry its target id (assigned, from the URL, or by its criteria).

    Entries are identified in processing order, so a resource the transaction
    deletes no longer matches a later entry's ifNoneExist.
    """
    require_type(e.type_)
    check_write_url(e)
    if e.method == "POST":
        criteria = e.request.get("ifNoneExist")
        if criteria:
            ids = await svc.find_matches(repo=repo, settings=settings, type_=e.type_,
                                         criteria=parse_qsl(str(criteria).split("?")[-1]))
            ids = [i for i in ids if f"{e.type_}/{i}" not in deleted]
            if len(ids) > 1:
                raise PreconditionFailed("ifNoneExist matches more than one resource")
            if ids:
                e.id_ = ids[0]
                e.response = {"status": "200 OK", "existing": True}
                return
        e.id_ = str(uuid.uuid4())
    elif e.id_ is None and e.method in ("PUT", "PATCH", "DELETE"):
        if not e.query:
            raise Invalid(f"{e.method} needs Type/id or Type?criteria in request.url")
        ids = await svc.find_matches(repo=repo, settings=settings, type_=e.type_,
                                     criteria=e.query)
        if len(ids) > 1:
            raise PreconditionFailed("The criteria match more than one resource")
        if ids:
            e.id_ = ids[0]
        elif e.method == "PUT":
            body_id = (e.resource or {}).get("id")
            if body_id:
                check_id(str(body_id))
                # Before peeking: a patient token must not learn that an id it cannot see
                # exists.
                await repo.check_target(type_=e.type_, id_=str(body_id), method="PUT")
                existing = await repo.peek(type_=e.type_, id_=str(body_id))
                if existing is not None and not existing.deleted:
                    raise Invalid(f"{e.type_}/{body_id} exists but does not match the criteria")
            e.id_ = str(body_id) if body_id else str(uuid.uuid4())
            e.assigned_id = not body_id
        elif e.method == "DELETE":
            e.response = {"status": "204 No Content", "nothing": True}
        elif e.method == "PATCH":
            raise NotFound("No resource matches the criteria")
    if e.id_ is not None:
        check_id(e.id_)
        if e.method == "DELETE":
            deleted.add(f"{e.type_}/{e.id_}")


async def _plan_one(repo: Repository, settings: Settings, e: Entry, plan: Plan,
                    ts: Any) -> None:
    if e.method in ("GET", "HEAD") or e.response.get("existing") or e.id_ is None:
        return  # reads come later; an ifNoneExist match or an unmatched delete writes nothing
    target = f"{e.type_}/{e.id_}"
    if target in plan.targets:
        raise Invalid(f"{target} is written by more than one entry of the transaction")
    plan.targets.add(target)
    if e.method in ("PUT", "PATCH", "DELETE") and not e.assigned_id:
        await repo.check_target(type_=e.type_, id_=e.id_, method=e.method)
    current = await repo.peek(type_=e.type_, id_=e.id_)
    if_match = e.request.get("ifMatch")
    if if_match and (current is None or current.version != svc.parse_etag(str(if_match))):
        raise PreconditionFailed(f"ifMatch {str(if_match)[:20]} is stale for {target}")
    if e.request.get("ifNoneMatch") == "*" and current is not None and not current.deleted:
        raise PreconditionFailed(f"{target} exists (ifNoneMatch *)")
    previous = None if current is None else current.version
    if e.method == "DELETE":
        if current is None or current.deleted:
            e.response = {"status": "204 No Content", "nothing": True}
            return
        write = PlannedWrite(e.type_, e.id_, previous, None, None, "DELETE")
    else:
        resource = await _new_content(repo, e, current is not None and not current.deleted)
        write = await asyncio.to_thread(_validated_write, settings, e, resource, previous, ts)
        e.response = {"status": "201 Created" if current is None or current.deleted
                      else "200 OK"}
    plan.writes.append(write)
    plan.entry_of_write.append(e.index)


def _validated_write(settings: Settings, e: Entry, resource: dict[str, Any],
                     previous: int | None, ts: Any) -> PlannedWrite:
    """Validate an entry's resource and plan its write (CPU work: run in a worker thread)."""
    validate_resource(resource, expected_type=e.type_, max_depth=settings.fhir_max_json_depth)
    return svc.plan_write(settings=settings, resource=resource, type_=e.type_, id_=e.id_ or "",
                          previous=previous, method=e.method, ts=ts)


async def _new_content(repo: Repository, e: Entry, exists: bool) -> dict[str, Any]:
    if e.method == "PATCH":
        from fhir_server.service.patch import apply_fhirpath_patch

        if not exists or e.resource is None:
            raise NotFound(f"{e.type_}/{e.id_} is not there to patch")
        stored = await repo.current(type_=e.type_, id_=e.id_ or "")
        return apply_fhirpath_patch(loads_stored(stored.text or "{}") if stored else {},
                                    e.resource)
    if e.resource is None:
        raise Invalid(f"{e.method} needs a resource")
    resource = dict(e.resource)
    if e.method == "PUT" and resource.get("id") not in (None, e.id_):
        raise Invalid(f"The resource id does not match {e.type_}/{e.id_}")
    resource["id"] = e.id_
    return resource


async def run_transaction(*, repo: Repository, settings: Settings, entries: list[Entry],
                          answer_get: Handler) -> None:
    mapping: dict[str, str] = {}
    deleted: set[str] = set()
    for e in sorted(entries, key=lambda x: ORDER[x.method]):
        try:
            if e.method not in ("GET", "HEAD"):
                await _identify(repo, settings, e, deleted)
        except FhirError as error:
            raise _fail(error, e.index) from None
        if e.full_url and e.id_ and e.method in ("POST", "PUT"):
            mapping[e.full_url] = f"{e.type_}/{e.id_}"
    # Walks of the whole Bundle in pure Python (hundreds of ms for a few MB): in a worker
    # thread, so the event loop keeps answering other requests (bench/event_loop_bench.py).
    resources = [e.resource for e in entries]
    for e, found in zip(entries, await asyncio.to_thread(conditional_references, resources),
                        strict=True):
        for ref in sorted(found - set(mapping)):
            try:
                mapping[ref] = await _resolve_conditional(repo, settings, ref)
            except FhirError as error:
                raise _fail(error, e.index) from None
    for e, resource in zip(entries, await asyncio.to_thread(rewritten, resources, mapping),
                           strict=True):
        e.resource = resource
    plan, ts = Plan(), now_ms()
    for e in sorted(entries, key=lambda x: ORDER[x.method]):
        try:
            await _plan_one(repo, settings, e, plan, ts)
        except FhirError as error:
            raise _fail(error, e.index) from None
    stored = await _commit(repo, settings, plan, ts)
    by_index = dict(zip(plan.entry_of_write, stored, strict=True))
    for e in entries:
        _finish_write(e, by_index.get(e.index))
    for e in sorted(entries, key=lambda x: ORDER[x.method]):
        if e.method in ("GET", "HEAD"):
            await answer_get(e)
    for e in entries:
        if e.response.pop("existing", None):
            cur = await repo.current(type_=e.type_, id_=e.id_ or "")
            if cur is not None:
                _finish_write(e, cur)


async def _commit(repo: Repository, settings: Settings, plan: Plan, ts: Any
                  ) -> list[StoredVersion]:
    """Commit the plan with its write rules' checks and side writes (``fhir_server/service/write_rules.py``).

    Returns the stored versions of the plan's own writes, in plan order.
    """
    changes, rule_entries = [], []
    for w, index in zip(plan.writes, plan.entry_of_write, strict=True):
        if rules.has_rules(w.type_):
            _, before = await svc.current_resource(repo, w.type_, w.id_)
            after = None if w.text is None else loads_stored(w.text)
            changes.append(rules.Change(type_=w.type_, id_=w.id_, before=before, after=after))
            rule_entries.append(index)
    # A side write is not traced to its entry: its conflicts name the first entry with rules.
    first_rule_entry = rule_entries[0] if rule_entries else 0
    effects = []
    try:
        async with rules.applying(repo, settings, changes) as side:
            for w in await svc.plan_side_writes(repo=repo, settings=settings, side=side, ts=ts):
                if f"{w.type_}/{w.id_}" in plan.targets:
                    raise _fail(Conflict(f"{w.type_}/{w.id_} is written by an entry and by the "
                                         "rules of another entry"), first_rule_entry)
                effects.append(w)
            stored = await repo.commit_transaction(plan.writes, ts=ts, side_effects=effects)
    except TransactionConflict as conflict:
        index = (plan.entry_of_write[conflict.index] if conflict.index < len(plan.writes)
                 else first_rule_entry)
        raise _fail(Conflict("Another request changed this resource; nothing of the "
                             "transaction was written"), index) from None
    return stored[:len(plan.writes)]


def _finish_write(e: Entry, stored: StoredVersion | None) -> None:
    e.response.pop("nothing", None)
    if stored is None:
        return
    e.stored = stored
    e.response.update({"location": f"{stored.reference}/_history/{stored.version}",
                       "etag": stored.etag, "lastModified": instant(stored.last_updated)})
    if stored.deleted:
        e.response["status"] = "204 No Content"


async def run_batch(*, repo: Repository, settings: Settings, entries: list[Entry],
                    answer_get: Handler) -> None:
    for e in sorted(entries, key=lambda x: ORDER[x.method]):
        if e.response.get("status"):
            continue  # answered before running (an entry the access token does not permit)
        try:
            if e.method in ("GET", "HEAD"):
                await answer_get(e)
            else:
                await _batch_write(repo, settings, e)
        except FhirError as error:
            e.response = {"status": str(error.status), "outcome": error.outcome()}
        except Exception as exc:  # one entry's failure must not lose the others' answers
            log.error("batch entry failed index=%d error=%s", e.index, type(exc).__name__)
            e.response = {"status": "500", "outcome": operation_outcome(
                [Issue("exception", f"{_where(e.index)}: internal error", "fatal")])}


def check_write_url(e: Entry) -> None:
    """A write's request.url names what it writes: ``Type`` for POST, ``Type/id`` or
    ``Type?criteria`` for PUT, PATCH and DELETE; anything longer (``Patient/a/b``,
    ``Patient/../x``, an operation) is refused rather than read as its first segments."""
    segments = len(urlsplit(e.url).path.strip("/").split("/"))
    if segments > (1 if e.method == "POST" else 2):
        expected = "Type" if e.method == "POST" else "Type/id or Type?criteria"
        raise Invalid(f"{e.method} in a Bundle takes request.url {expected}; this one has "
                      f"{segments} path segments",
                      expression=[f"{_where(e.index)}.request.url"])


async def _batch_write(repo: Repository, settings: Settings, e: Entry) -> None:
    require_type(e.type_)
    check_write_url(e)
    if_match = e.request.get("ifMatch")
    version = None if not if_match else svc.parse_etag(str(if_match))
    if e.method == "DELETE":
        if e.id_ is None:
            stored = await svc.conditional_delete(repo=repo, settings=settings, type_=e.type_,
                                                  criteria=e.query)
        else:
            stored = await svc.delete(repo=repo, settings=settings, type_=e.type_, id_=e.id_,
                                      if_match=version)
        e.response = {"status": "204 No Content"}
        _finish_write(e, stored)
        return
    resource = e.resource
    if e.method == "POST":
        criteria = e.request.get("ifNoneExist")
        written = await svc.create(
            repo=repo, settings=settings, type_=e.type_, resource=_required(resource),
            if_none_exist=None if not criteria else parse_qsl(str(criteria).split("?")[-1]))
    elif e.method == "PUT" and e.id_ is not None:
        written = await svc.update(repo=repo, settings=settings, type_=e.type_, id_=e.id_,
                                   resource=_required(resource), if_match=version)
    elif e.method == "PUT":
        written = await svc.conditional_update(repo=repo, settings=settings, type_=e.type_,
                                               criteria=e.query, resource=_required(resource),
                                               if_match=version)
    else:
        from fhir_server.service.patch import apply_fhirpath_patch

        body = _required(resource)
        written = await svc.patch(repo=repo, settings=settings, type_=e.type_, id_=e.id_ or "",
                                  apply=lambda r: apply_fhirpath_patch(r, body),
                                  if_match=version)
    e.response = {"status": _status(201 if written.created else 200)}
    _finish_write(e, written.stored)


def _required(resource: dict[str, Any] | None) -> dict[str, Any]:
    if resource is None:
        raise Invalid("The entry needs a resource")
    return resource


def response_bundle(bundle_type: str, entries: list[Entry], base_url: str) -> dict[str, Any]:
    out = []
    for e in entries:
        entry: dict[str, Any] = {}
        if e.stored is not None:
            entry["fullUrl"] = f"{base_url}/{e.stored.reference}"
        elif e.method in ("GET", "HEAD") and e.id_ and "resource" in e.response:
            entry["fullUrl"] = f"{base_url}/{e.type_}/{e.id_}"
        if "location" in e.response:
            e.response["location"] = f"{base_url}/{e.response['location']}"
        if "resource" in e.response:
            entry["resource"] = e.response.pop("resource")
        entry["response"] = e.response
        out.append(entry)
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": f"{bundle_type}-response",
            "entry": out}
