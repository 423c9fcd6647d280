"""Shared, read-only data sets for search tests.

Loading the data sets over HTTP takes a while, so each is loaded once per test
session into its own database; tests that use these fixtures must not write.
Tests that write use the per-test ``client`` fixture from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fhir_server.main import create_app
from tests.search.data import Loaded, load_examples, load_synthea
from tests.support.store import StoreFactory, fhir_client, make_settings, mint

SYNTHEA_TYPES = ("Patient", "Encounter", "Organization", "Practitioner", "Location")


async def _loaded(new_store: StoreFactory, loader: object, *types: str
                  ) -> AsyncIterator[Loaded]:
    store = new_store()
    app = create_app(make_settings(store))
    try:
        async with (app.router.lifespan_context(app),
                    fhir_client(app, await mint(app), timeout=120) as http):
            data = await loader(http, *types)  # type: ignore[operator]
            yield Loaded(http, data)
    finally:
        await store.drop()


@pytest.fixture(scope="session")
async def syn(new_store: StoreFactory) -> AsyncIterator[Loaded]:
    """The Synthea bulk data: Patients, Encounters, Organizations, Practitioners, Locations."""
    async for loaded in _loaded(new_store, load_synthea, *SYNTHEA_TYPES):
        yield loaded


@pytest.fixture(scope="session")
async def ex(new_store: StoreFactory) -> AsyncIterator[Loaded]:
    """Every official R4 example the server stores."""
    async for loaded in _loaded(new_store, load_examples):
        yield loaded
