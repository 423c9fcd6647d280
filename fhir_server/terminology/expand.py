"""``ValueSet/$expand``: the codes of a value set, a page at a time, optionally filtered.

The value set's plan (``compose.py``) is counted and read from the concept store
part by part, in the order of its includes and each code system's own order;
``filter`` keeps the concepts whose display, designations or code have a word
starting with each word of the filter (``diab mell`` finds "Type 2 diabetes
mellitus ..."), read from the word index. ``expansion.total`` is always the full
count. A result larger than ``FHIR_TERMINOLOGY_EXPANSION_LIMIT`` is refused
(400, ``too-costly``) unless the client asks for a page (``count``), so no
request ever builds an unbounded answer; one that takes longer than
``FHIR_TERMINOLOGY_EXPANSION_TIMEOUT`` is stopped (422, ``time_bound.py``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fhir_server.core.errors import Invalid
from fhir_server.storage.concepts import Active, ConceptRow, Part, Words, all_of, filter_words
from fhir_server.storage.model import instant, now_ms
from fhir_server.terminology.catalog import Catalog
from fhir_server.terminology.compose import Listed, Plan, plan_of
from fhir_server.terminology.time_bound import expansion_time


@dataclass(frozen=True)
class ExpandRequest:
    filter: str | None = None
    offset: int = 0
    count: int | None = None
    active_only: bool = False
    include_designations: bool = False


def narrowed(plan: Plan, req: ExpandRequest) -> Plan:
    """The plan with the text filter and activeOnly applied."""
    words = tuple(filter_words(req.filter or ""))
    extra = ([Words(words)] if words else []) + ([Active()] if req.active_only else [])
    if not extra:
        return plan
    listed = [c for c in plan.listed if _listed_matches(c, words)]
    return Plan(parts=[Part(p.system, all_of(p.where, *extra)) for p in plan.parts], listed=listed)


def _listed_matches(item: Listed, words: tuple[str, ...]) -> bool:
    row = ConceptRow(code=item.code, display=item.display)
    have = row.words()
    return all(any(w.startswith(prefix) for w in have) for prefix in words)


def _entry(system: str, version: str | None, row: ConceptRow,
           designations: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system}
    if version:
        out["version"] = version
    if row.abstract:
        out["abstract"] = True
    if not row.active:
        out["inactive"] = True
    out["code"] = row.code
    if row.display:
        out["display"] = row.display
    if designations and row.designations:
        out["designation"] = list(row.designations)
    return out


async def window(catalog: Catalog, plan: Plan, *, offset: int, count: int,
                 designations: bool) -> tuple[int, list[dict[str, Any]]]:
    """(total, the entries from ``offset``, at most ``count``)."""
    counts = [await catalog.repo.concepts.count(part=p) for p in plan.parts]
    total = sum(counts) + len(plan.listed)
    entries: list[dict[str, Any]] = []
    skip = offset
    for part, n in zip(plan.parts, counts, strict=True):
        if len(entries) >= count:
            break
        if skip >= n:
            skip -= n
            continue
        rows = await catalog.repo.concepts.select(part=part, offset=skip, limit=count - len(entries))
        entries += [_entry(part.system.url, part.system.version, r, designations) for r in rows]
        skip = 0
    for item in plan.listed[skip:]:
        if len(entries) >= count:
            break
        entries.append(_entry(item.system, item.version,
                              ConceptRow(code=item.code, display=item.display), False))
    return total, entries


async def expand(catalog: Catalog, value_set: dict[str, Any], req: ExpandRequest, *,
                 limit: int) -> dict[str, Any]:
    if req.offset < 0 or (req.count is not None and req.count < 0):
        raise Invalid("offset and count must not be negative", expression=["offset", "count"])
    plan = narrowed(await plan_of(catalog, value_set), req)
    count = min(req.count, limit) if req.count is not None else limit
    with expansion_time(catalog.settings):
        total, entries = await window(catalog, plan, offset=req.offset, count=count + 1,
                                      designations=req.include_designations)
    if req.count is None and req.offset + len(entries) > limit:
        raise Invalid(f"The expansion has {total} codes, more than this server returns at once "
                      f"({limit}): give a filter, or ask for pages with count and offset",
                      code="too-costly")
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}", "timestamp": instant(now_ms()),
        "total": total, "offset": req.offset, "parameter": _parameters(req, plan, count),
    }
    if entries[:count]:
        expansion["contains"] = entries[:count]
    out = {k: v for k, v in value_set.items() if k not in ("text", "expansion", "meta")}
    out.setdefault("resourceType", "ValueSet")
    out.setdefault("status", "active")
    out["expansion"] = expansion
    return out


def _parameters(req: ExpandRequest, plan: Plan, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.filter:
        out.append({"name": "filter", "valueString": req.filter})
    if req.count is not None:
        out.append({"name": "count", "valueInteger": count})
    if req.offset:
        out.append({"name": "offset", "valueInteger": req.offset})
    if req.active_only:
        out.append({"name": "activeOnly", "valueBoolean": True})
    if req.include_designations:
        out.append({"name": "includeDesignations", "valueBoolean": True})
    for system in dict.fromkeys(p.system.label for p in plan.parts):
        out.append({"name": "version", "valueUri": system})
    return out
