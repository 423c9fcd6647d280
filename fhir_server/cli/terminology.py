"""``fhir-server terminology load [--pack NAME] [--force] [FILE...]``.

Without files: loads the packs that are missing (``fhir_server/terminology/loader.py``), all
of them again with ``--force``. With files (JSON resources or Bundles, NDJSON):
loads a user's own CodeSystem, ValueSet and ConceptMap resources, validated like
any write. A CodeSystem with more than ``--inline-max`` concepts (default
20,000; CPT, SNOMED CT extracts...) is stored the way ICD-10-CM is: its concepts
in the concept store, the resource with ``content`` ``not-present`` and its
``count``, so no resource grows past what an engine stores in one document.
Runs on the configured database (the embedded file may be shared with a running
server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.service.validation import validate_resource
from fhir_server.storage.concepts import SystemVersion
from fhir_server.storage.open import StorageError, open_repository
from fhir_server.storage.repository import Repository
from fhir_server.terminology.catalog import Catalog, source_of
from fhir_server.terminology.codesystem import concept_rows, indexable
from fhir_server.terminology.loader import PACKS, LoadSummary, load, write_resources

TYPES = ("CodeSystem", "ValueSet", "ConceptMap")
INLINE_MAX = 20_000


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["load"], help="what to do")
    parser.add_argument("files", nargs="*", type=Path,
                        help="CodeSystem/ValueSet/ConceptMap resources, Bundles or NDJSON")
    parser.add_argument("--pack", action="append", choices=PACKS,
                        help="only this pack (repeatable; default: every pack)")
    parser.add_argument("--force", action="store_true", help="load the packs even if loaded")
    parser.add_argument("--inline-max", type=int, default=INLINE_MAX,
                        help="concepts above which a CodeSystem's concepts are kept out of "
                        "the resource")


def read_resources(path: Path) -> Iterator[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ndjson":
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line, parse_float=Decimal)
        return
    value = json.loads(text, parse_float=Decimal)
    if value.get("resourceType") == "Bundle":
        yield from (e["resource"] for e in value.get("entry") or []
                    if isinstance(e, dict) and isinstance(e.get("resource"), dict))
    else:
        yield value


async def load_files(repo: Repository, settings: Settings, paths: list[Path], *,
                     inline_max: int) -> LoadSummary:
    summary = LoadSummary()
    resources = [r for p in paths for r in read_resources(p)]
    for i, r in enumerate(resources):
        if r.get("resourceType") not in TYPES or not r.get("id"):
            raise ValueError(f"resource {i}: only CodeSystem, ValueSet and ConceptMap resources "
                             "with ids are loaded here (use `fhir-server load` for others)")
        validate_resource(r, max_depth=settings.fhir_max_json_depth)
    separate = {r["id"]: concept_rows(r) for r in resources if r["resourceType"] == "CodeSystem"
                and indexable(r) and len(concept_rows(r)) > inline_max}
    stored = [{**{k: v for k, v in r.items() if k != "concept"}, "content": "not-present",
               "count": len(separate[r["id"]])} if r["id"] in separate
              and r["resourceType"] == "CodeSystem" else r for r in resources]
    versions = await write_resources(repo, settings, stored, summary)
    catalog = Catalog(repo=repo, settings=settings)
    for r in resources:
        if r["resourceType"] != "CodeSystem" or not r.get("url"):
            continue
        if r["id"] in separate:
            rows = separate[r["id"]]
            await repo.concepts.replace(system=SystemVersion(
                url=r["url"], version=str(r.get("version") or ""),
                source=source_of(r["id"], versions[f"CodeSystem/{r['id']}"]),
                content=str(r.get("content"))), concepts=rows)
            summary.concepts += len(rows)
        else:
            found = await catalog.system(str(r["url"]), r.get("version"))
            summary.concepts += found.count if found else 0
    return summary


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> str:
        repo = await open_repository(settings)
        try:
            if args.files:
                done = await load_files(repo, settings, list(args.files),
                                        inline_max=args.inline_max)
            else:
                done = await load(repo, settings, packs=args.pack, force=args.force)
            return done.line()
        finally:
            await repo.close()

    try:
        print(asyncio.run(go()))
        return 0
    except (StorageError, OSError, ValueError, FhirError) as error:
        text = error.diagnostics if isinstance(error, FhirError) else str(error)
        print(f"fhir-server terminology: {text}", file=sys.stderr)
        return 1
