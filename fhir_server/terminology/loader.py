"""Loading terminology content: FHIR R4's code systems, value sets and concept maps, and ICD-10-CM.

Two packs, each loaded when its marker record is missing or names another
release (at start-up, ``FHIR_TERMINOLOGY_LOAD``), or on demand (``fhir-server
terminology load``):

* ``fhir-r4``: the 2,399 CodeSystem, ValueSet and ConceptMap resources of FHIR
  4.0.1 (``fhir_server/terminology/data``, made by ``tools/gen_terminology.py``), written as
  ordinary resources (with history, searchable), their concepts indexed;
* ``icd-10-cm``: the CodeSystem resource of ICD-10-CM and its 98,505 concepts
  (``fhir_server/terminology/icd10cm.py``).

Resources are written through the repository's all-or-nothing commits, 200 at a
time, as PUTs of their ids (a resource already there gets a new version only when
its content differs). The packaged definitions were validated once (a test does
it), so they are not validated again here.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.fhirjson import loads_stored
from fhir_server.service.interactions import plan_write
from fhir_server.storage.concepts import SystemVersion
from fhir_server.storage.fence import LeaseLost
from fhir_server.storage.model import now_ms
from fhir_server.storage.repository import PlannedWrite, Repository, TransactionConflict
from fhir_server.terminology import icd10cm
from fhir_server.terminology.catalog import source_of
from fhir_server.terminology.codesystem import concept_rows, indexable

log = logging.getLogger("fhir_server.terminology")

DEFINITIONS = Path(__file__).parent / "data" / "fhir-r4-terminology.ndjson.gz"
LOAD_LEASE = "terminology-load"
LOAD_WAIT = 1800.0  # seconds another loader's load is waited for: a first load takes 20-60 s
MARKERS = "terminology_loads"  # records kind: {_id: pack, release, at}
R4_RELEASE = "4.0.1"
PACKS = ("fhir-r4", "icd-10-cm")
CHUNK = 200
RETRIES = 5


@dataclass
class LoadSummary:
    resources: int = 0
    unchanged: int = 0
    concepts: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        took = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return (f"terminology: wrote {self.resources} resources ({self.unchanged} unchanged), "
                f"indexed {self.concepts} concepts" + (f"; {took}" if took else ""))


def release(pack: str) -> str:
    return R4_RELEASE if pack == "fhir-r4" else icd10cm.data_version()


def r4_resources() -> Iterator[dict[str, Any]]:
    with gzip.open(DEFINITIONS, "rt", encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line, parse_float=Decimal)


async def missing_packs(repo: Repository) -> list[str]:
    """The packs whose marker is missing or names another release than this server's."""
    out = []
    for pack in PACKS:
        marker = await repo.records.get(kind=MARKERS, id_=pack)
        if marker is None or marker.get("release") != release(pack):
            out.append(pack)
    return out


def _same(stored_text: str | None, resource: dict[str, Any]) -> bool:
    if stored_text is None:
        return False
    stored = loads_stored(stored_text)
    stored.pop("meta", None)
    return stored == {k: v for k, v in resource.items() if k != "meta"}


async def write_resources(repo: Repository, settings: Settings, resources: list[dict[str, Any]],
                          summary: LoadSummary) -> dict[str, int]:
    """PUT each resource (by its id) in commits of ``CHUNK``; the version of each id after."""
    versions: dict[str, int] = {}
    for start in range(0, len(resources), CHUNK):
        chunk = resources[start:start + CHUNK]
        for attempt in range(RETRIES):
            ts = now_ms()
            writes: list[PlannedWrite] = []
            for r in chunk:
                type_, id_ = r["resourceType"], r["id"]
                current = await repo.current(type_=type_, id_=id_)
                previous = None if current is None else current.version
                if current is not None and _same(current.text, r):
                    versions[f"{type_}/{id_}"] = current.version
                    summary.unchanged += 1
                    continue
                writes.append(plan_write(settings=settings, resource=r, type_=type_, id_=id_,
                                         previous=previous,
                                         method="PUT" if previous else "POST", ts=ts))
            try:
                stored = await repo.commit_transaction(writes, ts=ts) if writes else []
            except TransactionConflict:
                if attempt == RETRIES - 1:
                    raise
                continue  # another process wrote one of them: plan the chunk again
            for s in stored:
                versions[f"{s.type_}/{s.id_}"] = s.version
            summary.resources += len(stored)
            break
    return versions


async def load_r4(repo: Repository, settings: Settings, summary: LoadSummary) -> None:
    resources = list(r4_resources())
    versions = await write_resources(repo, settings, resources, summary)
    for r in resources:
        if r["resourceType"] != "CodeSystem" or not indexable(r) or not r.get("url"):
            continue
        source = source_of(r["id"], versions[f"CodeSystem/{r['id']}"])
        version = str(r.get("version") or "")
        existing = await repo.concepts.system(url=r["url"], version=version)
        if existing is not None and existing.source == source:
            continue
        rows = concept_rows(r)
        await repo.concepts.replace(system=SystemVersion(
            url=r["url"], version=version, source=source, content=str(r["content"])),
            concepts=rows)
        summary.concepts += len(rows)


async def load_icd10cm(repo: Repository, settings: Settings, summary: LoadSummary) -> None:
    rows = await asyncio.to_thread(icd10cm.concepts)  # seconds of parsing: off the loop
    resource = icd10cm.code_system(len(rows))
    versions = await write_resources(repo, settings, [resource], summary)
    source = source_of(icd10cm.RESOURCE_ID, versions[f"CodeSystem/{icd10cm.RESOURCE_ID}"])
    existing = await repo.concepts.system(url=icd10cm.SYSTEM, version=resource["version"])
    if existing is not None and existing.count == len(rows) and existing.source == source:
        return
    await repo.concepts.replace(system=SystemVersion(
        url=icd10cm.SYSTEM, version=resource["version"], source=source,
        content="complete"), concepts=rows)
    summary.concepts += len(rows)


LOADERS: dict[str, Callable[[Repository, Settings, LoadSummary], Any]] = {
    "fhir-r4": load_r4, "icd-10-cm": load_icd10cm}


async def load(repo: Repository, settings: Settings, *, packs: list[str] | None = None,
               force: bool = False) -> LoadSummary:
    """Load the packs (those missing, unless ``force``) and mark them loaded.

    The markers are read first: a start that finds every pack loaded takes no lease. Loading
    is one loader at a time (a lease shared by every process on the database: workers,
    replicas, the CLI, renewed while it loads); the others wait for it and then find the
    packs loaded. A pack is marked only once whole, so a load cut short (a killed process,
    a lost lease) is done again by the next loader; what it had written is reused."""
    summary = LoadSummary()
    if not force and not await _todo(repo, packs):
        return summary
    for attempt in range(RETRIES):
        try:
            return await _load(repo, settings, packs, force, summary)
        except LeaseLost:  # this process stalled past its lease and another loader took over
            log.warning("terminology load lost its lease; waiting for the other loader "
                        "attempt=%d", attempt + 1)
    raise LeaseLost(LOAD_LEASE)


async def _todo(repo: Repository, packs: list[str] | None) -> list[str]:
    return [p for p in await missing_packs(repo) if packs is None or p in packs]


async def _load(repo: Repository, settings: Settings, packs: list[str] | None, force: bool,
                summary: LoadSummary) -> LoadSummary:
    async with repo.locks.hold([LOAD_LEASE], wait=LOAD_WAIT):
        todo = list(packs or PACKS) if force else await _todo(repo, packs)
        for pack in todo:
            started = time.monotonic()
            log.info("terminology loading pack=%s release=%s", pack, release(pack))
            await LOADERS[pack](repo, settings, summary)
            summary.seconds[pack] = time.monotonic() - started
            await repo.records.delete(kind=MARKERS, id_=pack)
            await repo.records.insert(kind=MARKERS, doc={"_id": pack, "release": release(pack),
                                                         "at": time.time()})
    if todo:
        log.info("%s", summary.line())
    return summary
