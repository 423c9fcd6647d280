"""The repository's instrumentation is derived from the abstract class: every database
call ``Repository`` declares is timed, on a real repository, without a list to keep."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from fhir_server.storage.instrumented import (
    NOT_DATABASE_CALLS,
    database_calls,
    instrument_repository,
)
from fhir_server.storage.repository import Repository
from fhir_server.storage.sqlite.repository import SqliteRepository


def test_every_coroutine_of_the_interface_is_a_database_call_or_named_otherwise() -> None:
    public = {n for n, m in vars(Repository).items()
              if not n.startswith("_") and inspect.iscoroutinefunction(m)}
    assert set(database_calls()) == public - NOT_DATABASE_CALLS
    assert public >= NOT_DATABASE_CALLS  # no stale exception
    assert {"search", "history", "write", "commit_transaction"} <= set(database_calls())


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqliteRepository]:
    repo = SqliteRepository(path=tmp_path / "instrumented.sqlite3")
    await repo.open()
    try:
        yield repo
    finally:
        await repo.close()


def _count(operation: str) -> float:
    return REGISTRY.get_sample_value("fhir_db_call_duration_seconds_count",
                                     {"operation": operation, "outcome": "ok"}) or 0.0


async def test_calls_are_timed_by_name(sqlite: SqliteRepository) -> None:
    instrumented = instrument_repository(sqlite)
    before = {name: _count(name) for name in ("current", "peek", "types", "exists")}
    assert await instrumented.current(type_="Patient", id_="nobody") is None
    assert await instrumented.peek(type_="Patient", id_="nobody") is None
    assert await instrumented.types() == []
    assert not await instrumented.exists(type_="Patient", id_="nobody")
    # exists() calls peek() on the same instance: it is measured as well
    assert _count("current") == before["current"] + 1
    assert _count("types") == before["types"] + 1
    assert _count("exists") == before["exists"] + 1
    assert _count("peek") == before["peek"] + 2
