"""Shared, read-only data sets for search tests.

Loading the data sets over HTTP takes a while, so each is loaded once per test
session into its own database; tests that use these fixtures must not write.
Tests that write use the per-test ``client`` fixture from tests/conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from pymongo import AsyncMongoClient

from fhir_server.main import create_app
from tests.conftest import fhir_client, make_settings, mint
from tests.search.data import Store, load_examples, load_synthea

SYNTHEA_TYPES = ("Patient", "Encounter", "Organization", "Practitioner", "Location")


@dataclass
class Loaded:
    client: httpx.AsyncClient
    data: Store


async def _loaded(mongo_uri: str, loader: object, *types: str) -> AsyncIterator[Loaded]:
    name = f"t_search_{uuid.uuid4().hex[:12]}"
    app = create_app(make_settings(mongo_uri, name))
    try:
        async with (app.router.lifespan_context(app),
                    fhir_client(app, await mint(app), timeout=120) as http):
            data = await loader(http, *types)  # type: ignore[operator]
            yield Loaded(http, data)
    finally:
        mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri)
        try:
            await mongo.drop_database(name)
        finally:
            await mongo.close()


@pytest.fixture(scope="session")
async def syn(mongo_uri: str) -> AsyncIterator[Loaded]:
    """The Synthea bulk data: Patients, Encounters, Organizations, Practitioners, Locations."""
    async for loaded in _loaded(mongo_uri, load_synthea, *SYNTHEA_TYPES):
        yield loaded


@pytest.fixture(scope="session")
async def ex(mongo_uri: str) -> AsyncIterator[Loaded]:
    """Every official R4 example the server stores."""
    async for loaded in _loaded(mongo_uri, load_examples):
        yield loaded
