"""The events tests' repository: opened on this test's own store, closed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fhir_server.storage.open import open_repository
from fhir_server.storage.repository import Repository
from tests.support.store import Store


@pytest.fixture
async def repo(store: Store) -> AsyncIterator[Repository]:
    repository = await open_repository(store.settings())
    try:
        yield repository
    finally:
        await repository.close()
