"""Loaders: put the shared data sets into the per-test database over HTTP.

Every loader returns the resources it stored (as Python data parsed from the
raw files), so tests compute their expected results from the same input.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from fhir_server.core.fhirjson import dumps
from fhir_server.core.models import resource_class
from tools.data_sets import EXAMPLES, definition
from tools.data_sets import SYNTHEA_BULK as SYNTHEA

# R4 examples the server rightly refuses (see tests/api/test_examples.py).
REFUSED = {"examplescenario-questionnaire.json", "evidence-example.json"}
FHIR_JSON = "application/fhir+json"

Resource = dict[str, Any]
Store = dict[str, dict[str, Resource]]  # type -> id -> resource


def _load(path: Path) -> Any:
    return json.loads(path.read_text(), parse_float=Decimal)


@cache
def _example_files() -> tuple[tuple[str, str, str], ...]:
    """(file name, resourceType, id) of every official example the server stores."""
    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        if path.name in REFUSED:
            continue
        res = _load(path)
        rtype = res["resourceType"]
        if resource_class(rtype) is None or rtype == "AuditEvent":
            continue  # AuditEvents are recorded by the server, never written by clients
        out.append((path.name, rtype, res.get("id") or path.stem.replace("_", "-")[:64]))
    return tuple(out)


def examples(*types: str) -> Store:
    """The official examples of these types as stored (last file wins for a shared id)."""
    store: Store = {}
    for name, rtype, id_ in _example_files():
        if types and rtype not in types:
            continue
        res = _load(EXAMPLES / name)
        store.setdefault(rtype, {})[id_] = {**res, "id": id_}
    return store


@cache
def _synthea_raw(rtype: str) -> tuple[Resource, ...]:
    lines = (SYNTHEA / f"{rtype}.ndjson").read_text().splitlines()
    return tuple(json.loads(line, parse_float=Decimal) for line in lines if line.strip())


CONDITIONAL = re.compile(r"^([A-Za-z]+)\?identifier=(.*)$")


@cache
def _identifier_index() -> dict[tuple[str, str], str]:
    """(type, 'system|value') -> id, over the Synthea resources that carry identifiers."""
    index: dict[tuple[str, str], str] = {}
    for rtype in ("Practitioner", "Organization", "Location", "Patient"):
        for res in _synthea_raw(rtype):
            for ident in res.get("identifier", []):
                index[(rtype, f"{ident.get('system', '')}|{ident.get('value', '')}")] = res["id"]
    return index


def resolve_conditional(value: Any) -> Any:
    """Rewrite every conditional reference 'Type?identifier=s|v' to 'Type/id'."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                m = CONDITIONAL.match(item)
                if m:
                    item = f"{m.group(1)}/{_identifier_index()[(m.group(1), m.group(2))]}"
            out[key] = resolve_conditional(item)
        return out
    if isinstance(value, list):
        return [resolve_conditional(v) for v in value]
    return value


def synthea(*types: str) -> Store:
    """The Synthea bulk resources of these types, conditional references made literal."""
    return {t: {r["id"]: resolve_conditional(r) for r in _synthea_raw(t)} for t in types}


async def put_all(client: httpx.AsyncClient, resources: Iterable[Resource],
                  concurrency: int = 12) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def put(res: Resource) -> None:
        async with sem:
            resp = await client.put(f"{res['resourceType']}/{res['id']}", content=dumps(res),
                                    headers={"Content-Type": FHIR_JSON})
        assert resp.status_code in (200, 201), f"{res['resourceType']}/{res['id']}: {resp.text[:300]}"

    await asyncio.gather(*(put(r) for r in resources))


async def store(client: httpx.AsyncClient, data: Store) -> Store:
    await put_all(client, [r for by_id in data.values() for r in by_id.values()])
    return data


async def load_examples(client: httpx.AsyncClient, *types: str) -> Store:
    return await store(client, examples(*types))


async def load_synthea(client: httpx.AsyncClient, *types: str) -> Store:
    return await store(client, synthea(*types))


def definitions_search_parameters() -> list[Resource]:
    bundle = definition("search-parameters.json")
    return [e["resource"] for e in bundle["entry"]]


def compartment_definition() -> Resource:
    return definition("compartmentdefinition-patient.json")


# ---------------------------------------------------------------- searching over HTTP


def entries(bundle: Resource, mode: str | None = "match") -> list[Resource]:
    """The entries' resources of a Bundle, optionally only those with this search.mode."""
    out = []
    for e in bundle.get("entry", []):
        if mode is None or e.get("search", {}).get("mode") == mode:
            out.append(e["resource"])
    return out


def entry_ids(bundle: Resource, mode: str | None = "match") -> list[str]:
    return [r["id"] for r in entries(bundle, mode)]


def typed_ids(bundle: Resource, mode: str | None = "match") -> list[str]:
    return [f"{r['resourceType']}/{r['id']}" for r in entries(bundle, mode)]


def link_url(bundle: Resource, relation: str) -> str | None:
    for item in bundle.get("link", []):
        if item.get("relation") == relation:
            return str(item["url"])
    return None


async def search(client: httpx.AsyncClient, path: str, params: Any = None,
                 status: int = 200, **kw: Any) -> Resource:
    resp = await client.get(path, params=params, **kw)
    assert resp.status_code == status, f"GET {resp.request.url}: {resp.status_code} {resp.text[:800]}"
    return dict(json.loads(resp.text, parse_float=Decimal))


async def search_pages(client: httpx.AsyncClient, path: str, params: Any = None,
                       max_pages: int = 500, **kw: Any) -> list[Resource]:
    """Every page of a search, following next links until there is none."""
    pages = [await search(client, path, params, **kw)]
    while (nxt := link_url(pages[-1], "next")) is not None:
        assert len(pages) < max_pages, "too many pages"
        pages.append(await search(client, nxt, **kw))
    return pages


async def search_ids(client: httpx.AsyncClient, path: str, params: Any = None,
                     **kw: Any) -> set[str]:
    """The ids of all matches of a search over all pages (asserting no duplicates)."""
    found: list[str] = []
    for page in await search_pages(client, path, params, **kw):
        found.extend(entry_ids(page))
    assert len(found) == len(set(found)), "a match appears twice"
    return set(found)


@dataclass
class Loaded:
    """A data set loaded into its own database, and a client of the app serving it."""

    client: httpx.AsyncClient
    data: Store
