"""The FHIR RESTful interactions on single resources and histories.

Keyword-only service functions between the HTTP layer and the repository:
they validate, apply the interaction's rules (versions, conditions,
referential integrity) and return what was stored.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.errors import Conflict, Gone, Invalid, NotFound, PreconditionFailed
from fhir_server.core.fhirjson import dumps, loads_stored
from fhir_server.core.models import check_id, require_type, resource_class
from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.extract import index_resource
from fhir_server.search.parse import WHOLE_NUMBER, criteria_of
from fhir_server.service import write_rules as rules
from fhir_server.service.search.codes import prepare
from fhir_server.service.validation import validate_resource
from fhir_server.storage.model import StoredVersion, instant, now_ms
from fhir_server.storage.repository import (
    PlannedWrite,
    Repository,
    TransactionConflict,
    VersionConflict,
)

WRITE_RETRIES = 40  # optimistic retries for writes without If-Match, with jittered backoff
CONDITIONAL_LIMIT = 2  # enough to tell one match from several
RELATIVE_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")
ETAG = re.compile(r'^(?:W/)?"([0-9]{1,9})"$')


@dataclass(frozen=True)
class Written:
    """The outcome of a write: the stored version and whether it created the resource."""

    stored: StoredVersion
    created: bool


def parse_etag(value: str, *, header: str = "If-Match") -> int:
    match = ETAG.match(value.strip())
    if not match:
        raise Invalid(f'{header} must be a version ETag such as W/"3"', expression=[header])
    return int(match.group(1))


def stamp(resource: dict[str, Any], *, id_: str, version: int, ts: Any) -> str:
    """The stored JSON text: the client's resource with the server's id and meta."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items()
            if k not in {"versionId", "lastUpdated"}}
    body = {k: v for k, v in resource.items() if k not in {"resourceType", "id", "meta"}}
    out = {
        "resourceType": resource["resourceType"],
        "id": id_,
        "meta": {"versionId": str(version), "lastUpdated": instant(ts), **meta},
        **body,
    }
    return dumps(out).decode()


def _references(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            yield ref, f"{path}.reference"
        for key, item in value.items():
            if key != "contained":
                yield from _references(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _references(item, f"{path}[{i}]")


async def check_references(*, repo: Repository, settings: Settings,
                           resource: dict[str, Any]) -> None:
    """With referential integrity on, every literal reference must resolve on this server."""
    if not settings.fhir_referential_integrity:
        return
    base = settings.base_url + "/"
    rtype = resource["resourceType"]
    for ref, where in _references(resource, rtype):
        local = ref[len(base):] if ref.startswith(base) else ref
        match = RELATIVE_REF.match(local)
        if not match or resource_class(match.group(1)) is None:
            continue
        if not await repo.exists(type_=match.group(1), id_=match.group(2)):
            raise Invalid(f"Reference '{match.group(1)}/{match.group(2)}' does not resolve to a "
                          "resource on this server", expression=[where], code="not-found")


async def _prepare(*, repo: Repository, settings: Settings, resource: dict[str, Any],
                   type_: str) -> None:
    # Validation and (in _store) search-value extraction are CPU work that grows with the
    # resource: in a worker thread, so that other requests are answered meanwhile.
    await asyncio.to_thread(validate_resource, resource, expected_type=type_,
                            max_depth=settings.fhir_max_json_depth)
    await check_references(repo=repo, settings=settings, resource=resource)


def plan_write(*, settings: Settings, resource: dict[str, Any], type_: str, id_: str,
               previous: int | None, method: str, ts: datetime) -> PlannedWrite:
    """The next version of a validated resource: its stored text and its search values."""
    text = stamp(resource, id_=id_, version=(previous or 0) + 1, ts=ts)
    index = index_resource({**resource, "id": id_}, base_url=settings.base_url)
    return PlannedWrite(type_, id_, previous, text, index, method)


async def _store(*, repo: Repository, settings: Settings, resource: dict[str, Any] | None,
                 type_: str, id_: str, previous: int | None, method: str) -> StoredVersion:
    """Write the next version (``resource`` None: a deletion), with the type's write rules.

    Raises VersionConflict when ``previous`` is no longer the current version.
    """
    if rules.has_rules(type_):
        return await _store_with_rules(repo=repo, settings=settings, resource=resource,
                                       type_=type_, id_=id_, previous=previous, method=method)
    ts = now_ms()
    if resource is None:
        return await repo.write(type_=type_, id_=id_, previous=previous, text=None, index=None,
                                method=method, ts=ts)
    w = await asyncio.to_thread(plan_write, settings=settings, resource=resource, type_=type_,
                                id_=id_, previous=previous, method=method, ts=ts)
    return await repo.write(type_=type_, id_=id_, previous=previous, text=w.text, index=w.index,
                            method=method, ts=ts)


async def current_resource(repo: Repository, type_: str, id_: str
                           ) -> tuple[int | None, dict[str, Any] | None]:
    """(current version, current content); content None when absent or deleted."""
    stored = await repo.current(type_=type_, id_=id_)
    if stored is None:
        return None, None
    return stored.version, (None if stored.text is None else loads_stored(stored.text))


async def plan_side_writes(*, repo: Repository, settings: Settings,
                           side: Sequence[rules.SideWrite], ts: datetime) -> list[PlannedWrite]:
    out = []
    for s in side:
        validate_resource(s.resource, expected_type=s.type_,
                          max_depth=settings.fhir_max_json_depth)
        current = await repo.peek(type_=s.type_, id_=s.id_)
        out.append(plan_write(settings=settings, resource=s.resource, type_=s.type_, id_=s.id_,
                              previous=None if current is None else current.version,
                              method="PUT" if current is not None else "POST", ts=ts))
    return out


async def _store_with_rules(*, repo: Repository, settings: Settings,
                            resource: dict[str, Any] | None, type_: str, id_: str,
                            previous: int | None, method: str) -> StoredVersion:
    for attempt in range(WRITE_RETRIES):
        version, before = await current_resource(repo, type_, id_)
        if version != previous:
            raise VersionConflict(f"{type_}/{id_}")
        after = None if resource is None else {**resource, "id": id_}
        change = rules.Change(type_=type_, id_=id_, before=before, after=after)
        async with rules.applying(repo, settings, [change]) as side:
            ts = now_ms()
            main = (PlannedWrite(type_, id_, previous, None, None, method) if resource is None
                    else plan_write(settings=settings, resource=resource, type_=type_, id_=id_,
                                    previous=previous, method=method, ts=ts))
            if not side:
                return await repo.write(type_=type_, id_=id_, previous=previous, text=main.text,
                                        index=main.index, method=method, ts=ts)
            effects = await plan_side_writes(repo=repo, settings=settings, side=side, ts=ts)
            try:
                return (await repo.commit_transaction([main], ts=ts, side_effects=effects))[0]
            except TransactionConflict as conflict:
                if conflict.index == 0:
                    raise VersionConflict(conflict.key) from None
        await _backoff(attempt)  # a side write raced another writer: plan again
    raise Conflict(f"{type_}/{id_} is being changed by other requests; try again")


async def find_matches(*, repo: Repository, settings: Settings, type_: str,
                       criteria: Sequence[tuple[str, str]]) -> list[str]:
    """Ids of the resources a conditional interaction's criteria match (at most two)."""
    parsed = criteria_of(list(criteria))
    if not parsed:
        raise Invalid("A conditional interaction needs search criteria")
    query = compile_criteria(CompileContext(base_url=settings.base_url), type_, parsed)
    query = await prepare(repo, settings, query)
    return await repo.search(type_=type_, query=query, sort=(), limit=CONDITIONAL_LIMIT)


async def find_resources(*, repo: Repository, settings: Settings, type_: str,
                         criteria: Sequence[tuple[str, str]], limit: int = 1000
                         ) -> list[dict[str, Any]]:
    """The current resources matching search criteria (for operations and write rules)."""
    parsed = criteria_of(list(criteria))
    query = compile_criteria(CompileContext(base_url=settings.base_url), type_, parsed)
    query = await prepare(repo, settings, query)
    ids = await repo.search(type_=type_, query=query, sort=(), limit=limit)
    found = await repo.fetch(type_=type_, ids=ids)
    return [loads_stored(stored.text) for stored in found if stored.text is not None]


async def create(*, repo: Repository, settings: Settings, type_: str, resource: dict[str, Any],
                 if_none_exist: Sequence[tuple[str, str]] | None = None) -> Written:
    """POST [type]: a new resource with a server-assigned id (a client id is ignored)."""
    require_type(type_)
    await _prepare(repo=repo, settings=settings, resource=resource, type_=type_)
    if if_none_exist is not None:
        ids = await find_matches(repo=repo, settings=settings, type_=type_, criteria=if_none_exist)
        if len(ids) > 1:
            raise PreconditionFailed("If-None-Exist matches more than one resource",
                                     expression=["If-None-Exist"])
        if ids:
            existing = await repo.current(type_=type_, id_=ids[0])
            if existing is not None and not existing.deleted:
                return Written(stored=existing, created=False)
    id_ = str(uuid.uuid4())
    stored = await _store(repo=repo, settings=settings, resource=resource, type_=type_, id_=id_,
                          previous=None, method="POST")
    return Written(stored=stored, created=True)


async def update(*, repo: Repository, settings: Settings, type_: str, id_: str,
                 resource: dict[str, Any], if_match: int | None = None,
                 method: str = "PUT") -> Written:
    """PUT [type]/[id]: a new version, or the first one (update as create)."""
    require_type(type_)
    check_id(id_)
    body_id = resource.get("id")
    if body_id is None:
        raise Invalid("The resource must have an id matching the URL for an update",
                      expression=[f"{type_}.id"])
    if body_id != id_:
        raise Invalid(f"The resource id '{str(body_id)[:64]}' does not match the URL id '{id_}'",
                      expression=[f"{type_}.id"])
    if method == "PUT":
        await repo.check_target(type_=type_, id_=id_, method=method)
    await _prepare(repo=repo, settings=settings, resource=resource, type_=type_)
    for attempt in range(WRITE_RETRIES):
        current = await repo.peek(type_=type_, id_=id_)
        if if_match is not None and (current is None or current.version != if_match):
            have = "does not exist" if current is None else f"is at version {current.version}"
            raise PreconditionFailed(f"If-Match version {if_match} is stale: {type_}/{id_} {have}")
        previous = None if current is None else current.version
        try:
            stored = await _store(repo=repo, settings=settings, resource=resource, type_=type_,
                                  id_=id_, previous=previous, method=method)
        except VersionConflict:
            if if_match is not None:
                raise PreconditionFailed(
                    f"{type_}/{id_} was changed by another request (If-Match {if_match})"
                ) from None
            await _backoff(attempt)
            continue
        return Written(stored=stored, created=current is None or current.deleted)
    raise Conflict(f"{type_}/{id_} is being changed by other requests; try again")


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * 2 ** min(attempt, 5))))


async def conditional_update(*, repo: Repository, settings: Settings, type_: str,
                             criteria: Sequence[tuple[str, str]], resource: dict[str, Any],
                             if_match: int | None = None) -> Written:
    """PUT [type]?criteria: update the one match, or create when nothing matches."""
    require_type(type_)
    ids = await find_matches(repo=repo, settings=settings, type_=type_, criteria=criteria)
    if len(ids) > 1:
        raise PreconditionFailed("The criteria match more than one resource")
    if not ids:
        body_id = resource.get("id")
        if body_id is not None:
            check_id(str(body_id), expression=f"{type_}.id")
            # Before peeking: a patient token must not learn that an id it cannot see exists.
            await repo.check_target(type_=type_, id_=str(body_id), method="PUT")
            existing = await repo.peek(type_=type_, id_=str(body_id))
            if existing is not None and not existing.deleted:
                raise Invalid(f"{type_}/{body_id} exists but does not match the criteria",
                              expression=[f"{type_}.id"])
            return await update(repo=repo, settings=settings, type_=type_, id_=str(body_id),
                                resource=resource, if_match=if_match)
        return await create(repo=repo, settings=settings, type_=type_, resource=resource)
    if resource.get("id") not in (None, ids[0]):
        raise Invalid("The resource id does not match the resource the criteria found",
                      expression=[f"{type_}.id"])
    return await update(repo=repo, settings=settings, type_=type_, id_=ids[0],
                        resource={**resource, "id": ids[0]}, if_match=if_match)


async def read(*, repo: Repository, type_: str, id_: str) -> StoredVersion:
    require_type(type_)
    check_id(id_)
    stored = await repo.current(type_=type_, id_=id_)
    if stored is None:
        raise NotFound(f"{type_}/{id_} is not known")
    if stored.deleted:
        raise Gone(f"{type_}/{id_} was deleted (version {stored.version})",
                   headers={"ETag": stored.etag})
    return stored


async def vread(*, repo: Repository, type_: str, id_: str, version: str) -> StoredVersion:
    require_type(type_)
    check_id(id_)
    if not WHOLE_NUMBER.match(version) or int(version) < 1:
        raise NotFound(f"{type_}/{id_} has no version '{version[:20]}'")
    stored = await repo.version(type_=type_, id_=id_, version=int(version))
    if stored is None:
        raise NotFound(f"{type_}/{id_} has no version {int(version)}")
    if stored.deleted:
        raise Gone(f"Version {stored.version} of {type_}/{id_} is a deletion")
    return stored


async def delete(*, repo: Repository, settings: Settings, type_: str, id_: str,
                 if_match: int | None = None) -> StoredVersion | None:
    """DELETE [type]/[id]: the deletion version, or None when it was already deleted."""
    require_type(type_)
    check_id(id_)
    await repo.check_target(type_=type_, id_=id_, method="DELETE")
    for attempt in range(WRITE_RETRIES):
        current = await repo.peek(type_=type_, id_=id_)
        if current is None:
            raise NotFound(f"{type_}/{id_} is not known")
        if if_match is not None and current.version != if_match:
            raise PreconditionFailed(f"If-Match version {if_match} is stale: {type_}/{id_} is at "
                                     f"version {current.version}")
        if current.deleted:
            return None
        try:
            return await _store(repo=repo, settings=settings, resource=None, type_=type_,
                                id_=id_, previous=current.version, method="DELETE")
        except VersionConflict:
            if if_match is not None:
                raise PreconditionFailed(f"{type_}/{id_} was changed by another request") from None
            await _backoff(attempt)
    raise Conflict(f"{type_}/{id_} is being changed by other requests; try again")


async def conditional_delete(*, repo: Repository, settings: Settings, type_: str,
                             criteria: Sequence[tuple[str, str]]) -> StoredVersion | None:
    """DELETE [type]?criteria: delete the single match (several matches are a 412)."""
    require_type(type_)
    ids = await find_matches(repo=repo, settings=settings, type_=type_, criteria=criteria)
    if len(ids) > 1:
        raise PreconditionFailed("The criteria match more than one resource; nothing was deleted")
    if not ids:
        return None
    return await delete(repo=repo, settings=settings, type_=type_, id_=ids[0])


async def patch(*, repo: Repository, settings: Settings, type_: str, id_: str,
                apply: Callable[[dict[str, Any]], dict[str, Any]],
                if_match: int | None = None) -> Written:
    """PATCH [type]/[id]: apply a patch to the current version; store it as an update would.

    The patch is applied to the version it was read from and written with that
    version as the expected one, so a concurrent change makes it re-read and re-apply
    (or answer 412 when the client named a version with If-Match).
    """
    for attempt in range(WRITE_RETRIES):
        current = await read(repo=repo, type_=type_, id_=id_)
        if if_match is not None and current.version != if_match:
            raise PreconditionFailed(f"If-Match version {if_match} is stale: {type_}/{id_} is at "
                                     f"version {current.version}")
        patched = apply(loads_stored(current.text or "{}"))
        try:
            return await update(repo=repo, settings=settings, type_=type_, id_=id_,
                                resource=patched, if_match=current.version, method="PATCH")
        except PreconditionFailed:
            if if_match is not None:
                raise
            await _backoff(attempt)
    raise Conflict(f"{type_}/{id_} is being changed by other requests; try again")


async def conditional_patch(*, repo: Repository, settings: Settings, type_: str,
                            criteria: Sequence[tuple[str, str]],
                            apply: Callable[[dict[str, Any]], dict[str, Any]],
                            if_match: int | None = None) -> Written:
    """PATCH [type]?criteria: patch the single match."""
    require_type(type_)
    ids = await find_matches(repo=repo, settings=settings, type_=type_, criteria=criteria)
    if len(ids) > 1:
        raise PreconditionFailed("The criteria match more than one resource; nothing was patched")
    if not ids:
        raise NotFound("No resource matches the criteria")
    return await patch(repo=repo, settings=settings, type_=type_, id_=ids[0], apply=apply,
                       if_match=if_match)
