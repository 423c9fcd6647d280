"""Writing resources from another system, matched by their identifiers, as one transaction.

Both EHR adapters (the HL7 v2 listener and the FHIR pull) describe what they want
stored as ``Wanted`` resources: a type, the identifiers that find it here, and its
content, whose references to other wanted resources are ``urn:wanted:KEY``. ``apply``
looks every one up by identifier (one search per type), merges or replaces the
content, leaves unchanged resources alone (so the same input twice changes nothing the
second time), and commits the rest through the transaction Bundle machinery
(``fhir_server/service/bundles.py``): ``PUT Type/id`` with ``ifMatch`` on the version read, or
with ``ifNoneMatch: *`` for a new resource, so the per-type write rules (no double
booking, draft Invoices, the bill of a finished visit) run as for any FHIR write, and a
concurrent change makes the whole transaction fail rather than be overwritten.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError, PreconditionFailed, Unprocessable
from fhir_server.core.fhirjson import dumps
from fhir_server.search.parse import MAX_VALUES
from fhir_server.service import interactions as svc
from fhir_server.service.bundles import Entry, run_transaction
from fhir_server.service.criteria import search_token
from fhir_server.storage.repository import Repository

WANTED = "urn:wanted:"
SEARCH_CHUNK = MAX_VALUES  # identifiers per search: as many values as one parameter takes


@dataclass
class Wanted:
    key: str  # a handle for references: urn:wanted:KEY
    type_: str
    match: list[tuple[str, str]]  # (system, value) identifiers, any of which finds it here
    content: dict[str, Any]
    merge: bool = True  # True: the elements given replace the stored ones, others are kept
    defaults: dict[str, Any] = field(default_factory=dict)  # elements for a new resource only
    create: bool = True  # False: it must exist already (PreconditionFailed otherwise)
    source: str = ""  # where it came from (an HL7 segment, a FHIR resource), for errors
    shared: bool = False  # named by many messages (a practitioner, a payer), rarely new
    # Filled by apply():
    id_: str | None = None
    outcome: str = ""  # created | updated | unchanged


@dataclass
class Found:
    id_: str
    version: int
    content: dict[str, Any]


@dataclass
class Applied:
    wanted: list[Wanted] = field(default_factory=list)

    def count(self, type_: str, outcome: str) -> int:
        return sum(1 for w in self.wanted if w.type_ == type_ and w.outcome == outcome)


def canonical(value: Any) -> bytes:
    """A resource's content in one form for comparing (keys sorted, exact decimals)."""
    return orjson.dumps(orjson.loads(dumps(value)), option=orjson.OPT_SORT_KEYS)


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


async def lookup(repo: Repository, settings: Settings, type_: str,
                 identifiers: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Found]:
    """The stored resources of a type holding any of these identifiers, by identifier."""
    out: dict[tuple[str, str], Found] = {}
    keys = sorted(set(identifiers))
    for start in range(0, len(keys), SEARCH_CHUNK):
        chunk = keys[start:start + SEARCH_CHUNK]
        found = await svc.find_resources(
            repo=repo, settings=settings, type_=type_, limit=10 * len(chunk) + 10,
            criteria=[("identifier", ",".join(search_token(s or None, v) for s, v in chunk))])
        wanted = set(chunk)
        for resource in found:
            for i in resource.get("identifier") or []:
                pair = (str(i.get("system", "")), str(i.get("value", "")))
                if pair in wanted:
                    out.setdefault(pair, Found(str(resource["id"]),
                                               int(resource["meta"]["versionId"]),
                                               _content(resource)))
    return out


def _deep(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: objects merged element by element, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (_deep(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


def merged(w: Wanted, stored: dict[str, Any] | None) -> dict[str, Any]:
    """The content to store: ``w.content`` over the stored content (when merging; objects
    such as ``period`` element by element), the identifiers of both kept (the stored ones
    not given again); ``defaults`` only where nothing is stored."""
    if stored is None:
        return {"resourceType": w.type_, **_deep(w.defaults, w.content)}
    base = stored if w.merge else {"resourceType": w.type_, **{
        k: v for k, v in stored.items() if k in w.defaults}}
    out = _deep(_deep(w.defaults, base), w.content)
    given = {(i.get("system"), i.get("value")) for i in w.content.get("identifier") or []}
    kept = [i for i in stored.get("identifier") or []
            if (i.get("system"), i.get("value")) not in given]
    if kept or w.content.get("identifier"):
        out["identifier"] = [*(w.content.get("identifier") or []), *kept]
    return out


def _rewrite(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _rewrite(v, ids) for k, v in value.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref.startswith(WANTED):
            out["reference"] = ids[ref]
        return out
    if isinstance(value, list):
        return [_rewrite(v, ids) for v in value]
    return value


async def identify(repo: Repository, settings: Settings, wanted: list[Wanted]
                   ) -> dict[str, Found]:
    """Find each wanted resource here; give it its id (a new one when it is not here)."""
    found: dict[str, Found] = {}
    by_type: dict[str, list[Wanted]] = {}
    for w in wanted:
        by_type.setdefault(w.type_, []).append(w)
    for type_, group in by_type.items():
        stored = await lookup(repo, settings, type_, [m for w in group for m in w.match])
        for w in group:
            hits = {stored[m].id_: stored[m] for m in w.match if m in stored}
            if len(hits) > 1:
                raise WriteFailed(PreconditionFailed(
                    f"The identifiers of this {type_} match {len(hits)} resources here",
                    code="multiple-matches"), w)
            if hits:
                hit = next(iter(hits.values()))
                w.id_ = hit.id_
                found[w.key] = hit
            elif not w.create:
                raise WriteFailed(Unprocessable(f"No {type_} here has these identifiers",
                                                code="not-found"), w)
            else:
                w.id_ = str(uuid.uuid4())
    return found


async def apply(repo: Repository, settings: Settings, wanted: list[Wanted],
                found: dict[str, Found] | None = None) -> Applied:
    """Store the wanted resources, all or nothing; each gets its ``id_`` and ``outcome``.
    ``found``: what ``identify`` found, when the caller identified them already."""
    if found is None:
        found = await identify(repo, settings, wanted)
    ids = {f"{WANTED}{w.key}": f"{w.type_}/{w.id_}" for w in wanted}
    entries: list[Entry] = []
    for w in wanted:
        hit = found.get(w.key)
        content = _rewrite(merged(w, hit.content if hit else None), ids)
        if hit is not None and canonical(content) == canonical(hit.content):
            w.outcome = "unchanged"
            continue
        w.outcome = "updated" if hit else "created"
        request = ({"ifMatch": f'W/"{hit.version}"'} if hit else {"ifNoneMatch": "*"})
        entries.append(Entry(index=len(entries), method="PUT", url=f"{w.type_}/{w.id_}",
                             type_=w.type_, id_=w.id_, query=[],
                             resource={**content, "id": w.id_},
                             request={"method": "PUT", "url": f"{w.type_}/{w.id_}", **request},
                             full_url=None))
    if entries:
        try:
            await run_transaction(repo=repo, settings=settings, entries=entries,
                                  answer_get=_no_reads)
        except FhirError as error:
            raise WriteFailed(error, _culprit(error, entries, wanted)) from None
    return Applied(wanted=wanted)


class WriteFailed(Exception):
    """The transaction was refused; ``wanted`` is the resource it names (when it names one)."""

    def __init__(self, error: FhirError, wanted: Wanted | None) -> None:
        super().__init__(error.diagnostics)
        self.error, self.wanted = error, wanted


def _culprit(error: FhirError, entries: list[Entry], wanted: list[Wanted]) -> Wanted | None:
    """The resource an error names: by its entry, else by the type its FHIRPath starts
    with (a write rule's refusal, such as ``Appointment.participant[1].actor``)."""
    first = (error.expression or [""])[0]
    m = re.match(r"^Bundle\.entry\[(\d+)\]", first)
    if not m or int(m.group(1)) >= len(entries):
        type_ = first.split(".", 1)[0]
        return next((w for w in wanted if w.type_ == type_), None)
    target = entries[int(m.group(1))].id_
    return next((w for w in wanted if w.id_ == target), None)


async def _no_reads(entry: Entry) -> None:  # the transactions here have no GET entries
    return None
