"""Running a search: criteria -> filter -> sorted ids -> a page, its includes, a Bundle.

Paging is stable: the first page stores the ordered ids of the whole result
(up to ``fhir_search_max_results``) as a snapshot, and later pages read
from it (``_page``/``_offset``), so a result set seen through pages has no
duplicates or gaps while other data changes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.errors import Invalid, Issue, NotFound
from fhir_server.core.models import require_type
from fhir_server.search.compartment import compartment_query
from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.parse import WHOLE_NUMBER, Criterion, criteria_of, parse_count
from fhir_server.search.query import SortKey, and_
from fhir_server.search.registry import lookup
from fhir_server.service.search.codes import prepare
from fhir_server.service.search.includes import Include, parse_includes, resolve_includes
from fhir_server.service.subsetting import parse_elements, parse_summary
from fhir_server.storage.model import StoredVersion
from fhir_server.storage.repository import Repository

TOTAL_MODES = frozenset({"none", "estimate", "accurate"})
SNAPSHOTS = "searches"  # the records kind of search result snapshots
SNAPSHOT_SECONDS = 3600  # how long a snapshot serves later pages
PURGE_INTERVAL = 60.0
_purged_at: dict[int, float] = {}


@dataclass
class SearchRequest:
    type_: str
    criteria: list[Criterion]
    count: int
    sort: tuple[SortKey, ...]
    sort_param: str
    total_mode: str
    summary: str | None
    elements: frozenset[str] | None
    includes: list[Include]
    revincludes: list[Include]
    page: str | None
    offset: int
    lenient: bool
    compartment: tuple[str, str] | None = None
    passthrough: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class SearchResult:
    matches: list[StoredVersion]
    included: list[StoredVersion]
    total: int | None
    used: list[tuple[str, str]]
    issues: list[Issue]
    page_id: str | None
    offset: int
    has_next: bool


def _one(params: list[tuple[str, str]], name: str) -> str | None:
    found = [v for k, v in params if k == name]
    if len(found) > 1:
        raise Invalid(f"{name} may be given once", expression=[name])
    return found[0] if found else None


def _sort_spec(type_: str, raw: str | None) -> tuple[SortKey, ...]:
    out: list[SortKey] = []
    for item in (raw or "").split(","):
        if not item:
            continue
        name = item.lstrip("-")
        if name not in {"_id", "_lastUpdated"} and lookup(type_, name) is None:
            raise Invalid(f"Cannot sort on unknown parameter '{name[:64]}'", expression=["_sort"])
        out.append(SortKey(name, descending=item.startswith("-")))
    # The engines end every order with _id, so pages never overlap.
    return tuple(out) or (SortKey("_id"),)


def parse_request(type_: str, params: list[tuple[str, str]], settings: Settings, *,
                  lenient: bool, compartment: tuple[str, str] | None = None) -> SearchRequest:
    require_type(type_)
    criteria = criteria_of(params)
    total = _one(params, "_total") or "accurate"
    if total not in TOTAL_MODES:
        raise Invalid("_total must be none, estimate or accurate", expression=["_total"])
    offset_raw = _one(params, "_offset") or "0"
    if not WHOLE_NUMBER.match(offset_raw):
        raise Invalid("_offset must be a whole number", expression=["_offset"])
    passthrough = [(k, v) for k, v in params if k in {"_summary", "_elements", "_include",
                                                       "_revinclude", "_format", "_pretty"}
                   or k.startswith(("_include:", "_revinclude:"))]
    return SearchRequest(
        type_=type_, criteria=criteria, count=parse_count(_one(params, "_count"), settings),
        sort=_sort_spec(type_, _one(params, "_sort")), sort_param=_one(params, "_sort") or "",
        total_mode=total, summary=parse_summary(_one(params, "_summary")),
        elements=parse_elements(_one(params, "_elements")),
        includes=parse_includes(params, "_include", type_),
        revincludes=parse_includes(params, "_revinclude", type_),
        page=_one(params, "_page"), offset=int(offset_raw), lenient=lenient,
        compartment=compartment, passthrough=passthrough)


async def _ids(repo: Repository, req: SearchRequest, ctx: CompileContext,
               settings: Settings) -> tuple[list[str], int | None, list[tuple[str, str]]]:
    query = await prepare(repo, settings, compile_criteria(ctx, req.type_, req.criteria))
    if req.compartment is not None:
        query = and_(compartment_query(req.compartment, req.type_), query)
    if req.summary == "count":
        return [], await repo.count(type_=req.type_, query=query), ctx.used
    cap = settings.fhir_search_max_results
    found = await repo.search(type_=req.type_, query=query, sort=req.sort, limit=cap + 1)
    ids = found[:cap]
    total: int | None = None
    if req.total_mode != "none":
        total = len(ids) if len(found) <= cap else await repo.count(type_=req.type_, query=query)
    return ids, total, ctx.used


async def _save_snapshot(repo: Repository, snapshot: dict[str, Any]) -> None:
    now = time.time()
    if now - _purged_at.get(id(repo.records), 0.0) > PURGE_INTERVAL:
        _purged_at[id(repo.records)] = now
        await repo.records.purge(kind=SNAPSHOTS, before=now)
    await repo.records.insert(kind=SNAPSHOTS, doc={**snapshot, "exp": now + SNAPSHOT_SECONDS})


async def _load_snapshot(repo: Repository, id_: str) -> dict[str, Any] | None:
    snapshot = await repo.records.get(kind=SNAPSHOTS, id_=id_)
    if snapshot is None or snapshot.get("exp", 0) < time.time():
        return None
    return snapshot


async def run_search(*, repo: Repository, settings: Settings, req: SearchRequest) -> SearchResult:
    ctx = CompileContext(base_url=settings.base_url, lenient=req.lenient)
    if req.page is not None:
        snapshot = await _load_snapshot(repo, req.page)
        if (snapshot is None or snapshot.get("t") != req.type_
                or snapshot.get("who", "") != _owner(repo)):
            raise NotFound("That page of search results has expired; search again",
                           expression=["_page"])
        ids, total = list(snapshot["ids"]), snapshot.get("total")
        used = [(p["n"], p["v"]) for p in snapshot["used"]]
        page_id = req.page
    else:
        ids, total, used = await _ids(repo, req, ctx, settings)
        page_id = None
        if len(ids) > req.count and req.count > 0 and req.summary != "count":
            page_id = uuid.uuid4().hex
            await _save_snapshot(repo, {"_id": page_id, "t": req.type_, "ids": ids,
                                        "who": _owner(repo), "total": total,
                                        "used": [{"n": n, "v": val} for n, val in used]})
    if req.total_mode == "none":
        total = None
    page_ids = [] if req.summary == "count" else ids[req.offset:req.offset + req.count]
    fetched = await repo.fetch(type_=req.type_, ids=page_ids)
    included = await resolve_includes(repo=repo, matches=fetched, includes=req.includes,
                                      revincludes=req.revincludes)
    return SearchResult(matches=fetched, included=included, total=total,
                        used=list(used), issues=ctx.ignored, page_id=page_id, offset=req.offset,
                        has_next=req.count > 0 and req.offset + req.count < len(ids))


def _owner(repo: Repository) -> str:
    """Whose terms a result was computed under: pages are served only to the same terms."""
    return str(getattr(repo, "access_key", ""))
