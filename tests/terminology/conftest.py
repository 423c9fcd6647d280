"""Terminology tests share one store with the content loaded (FHIR R4's terminology and
ICD-10-CM take about a minute to load on SQLite, a few on FerretDB): loaded once per run by
the loader itself, then each module gets its own app on it. Tests that write use their own
ids and urls, so they do not see each other."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from functools import cache
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.main import create_app
from fhir_server.storage.open import open_repository
from fhir_server.terminology.loader import DEFINITIONS as PACKAGED
from fhir_server.terminology.loader import load
from tests.conftest import Store, StoreFactory, fhir_client, make_settings, mint
from tools.data_sets import definition

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.fixture(scope="session")
async def terminology_store(new_store: StoreFactory) -> AsyncIterator[Store]:
    made = new_store()
    repo = await open_repository(make_settings(made))
    try:
        await load(repo, make_settings(made))
    finally:
        await repo.close()
    yield made
    await made.drop()


@pytest.fixture(scope="module")
async def term_app(terminology_store: Store) -> AsyncIterator[FastAPI]:
    # Start-up finds every pack loaded (its markers) and loads nothing.
    application = create_app(make_settings(terminology_store, fhir_terminology_load=True,
                                           fhir_terminology_expansion_limit=2000))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def tx(term_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with fhir_client(term_app, await mint(term_app)) as http:
        yield http


@cache
def raw(name: str) -> tuple[dict[str, Any], ...]:
    """The resources of one of the FHIR R4 definition files, as published."""
    bundle = definition(name)
    return tuple(e["resource"] for e in bundle["entry"])


def raw_resource(type_: str, url: str) -> dict[str, Any]:
    for name in ("valuesets.json", "v2-tables.json", "v3-codesystems.json", "conceptmaps.json"):
        for r in raw(name):
            if r["resourceType"] == type_ and r.get("url") == url:
                return r
    raise KeyError(url)


def packaged() -> list[dict[str, Any]]:
    """What the server loads (fhir_server/terminology/data)."""
    with gzip.open(PACKAGED, "rt") as lines:
        return [json.loads(line) for line in lines]


def params(body: dict[str, Any]) -> dict[str, list[Any]]:
    """A Parameters resource's values by name (the value, or the parts as a dict)."""
    out: dict[str, list[Any]] = {}
    for p in body.get("parameter", []):
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if "part" in p:
            value = params({"parameter": p["part"]})
        out.setdefault(p["name"], []).append(value)
    return out


def parameters(**values: Any) -> dict[str, Any]:
    """A Parameters resource from keyword values (key valueX -> value)."""
    items = []
    for name, (key, value) in values.items():
        items.append({"name": name, key: value})
    return {"resourceType": "Parameters", "parameter": items}
