"""Terminology tests share one store with the content loaded (FHIR R4's terminology and
ICD-10-CM take about a minute to load on SQLite, a few on FerretDB): loaded once per run by
the loader itself, then each module gets its own app on it. Tests that write use their own
ids and urls, so they do not see each other."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.main import create_app
from fhir_server.storage.open import open_repository
from fhir_server.terminology.loader import load
from tests.support.store import Store, StoreFactory, fhir_client, make_settings, mint


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test on the terminology store is slow: the first one in a run waits for the
    content to load (a minute on SQLite, more on FerretDB)."""
    for item in items:
        if "terminology_store" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
