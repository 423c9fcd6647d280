"""Test fixtures: a real database, one per test, on the engine the run is for.

``FHIR_TEST_ENGINE`` chooses it: ``sqlite`` (the embedded default, a file per
test) or ``mongo`` (``MONGODB_URI`` when set, else one embedded FerretDB for the run standing
in for MongoDB, a database per test). ``make test`` runs both. What tests import (the store,
clients, tokens, server processes) is in tests/support/: no test module imports a conftest.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.main import create_app
from fhir_server.storage.open import open_repository
from fhir_server.storage.repository import Repository
from tests.support.server_process import server_process
from tests.support.store import (
    ENGINE,
    ClientFor,
    Store,
    StoreFactory,
    fhir_client,
    make_settings,
    mint,
    mint_for_database,
)


def _dump_tasks(signum: int, frame: Any) -> None:
    """SIGUSR1: print every task of the running event loop with its stack, to find what a
    hung test waits for (``kill -USR1 <pytest pid>``)."""
    import asyncio

    loop = asyncio._get_running_loop()
    tasks = asyncio.all_tasks(loop) if loop is not None else set()
    print(f"\n--- {len(tasks)} tasks ---", file=sys.stderr)
    for task in tasks:
        task.print_stack(file=sys.stderr)


signal.signal(signal.SIGUSR1, _dump_tasks)


# The `process` marker is kept true: a test that starts a process (subprocess.Popen, which
# subprocess.run and asyncio's subprocesses go through too) while it runs, or while its
# function-scoped fixtures set it up or tear it down, fails unless it is marked
# `process`. What session- and module-scoped fixtures start (FerretDB for the run) is
# shared and is not charged to the test that happens to come first.
_started: list[str] = []
_watching = False
_unmarked = False  # the running test is not marked `process`


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "subprocess.Popen" and _watching:
        _started.append(str(args[1] if len(args) > 1 else args))


sys.addaudithook(_audit)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
                         ) -> Iterator[Any]:
    # Called for the fixtures of this directory's nodes: a session fixture's goes to the
    # session's hooks and never gets here, and is set up unwatched (see runtest_setup).
    global _watching
    was, _watching = _watching, _unmarked and fixturedef.scope == "function"
    try:
        return (yield)
    finally:
        _watching = was


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[Any]:
    global _watching, _unmarked
    _started.clear()
    _unmarked, _watching = item.get_closest_marker("process") is None, False
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[Any]:
    global _watching
    _watching = _unmarked
    try:
        return (yield)
    finally:
        _watching = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[Any]:
    global _watching
    _watching = _unmarked
    try:
        result = yield
    finally:
        _watching = False
    if _started:
        started = sorted(set(_started))
        _started.clear()
        pytest.fail(f"{item.nodeid} started a process but is not marked "
                    f"@pytest.mark.process: {started}", pytrace=False)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `app` marker is on every test that builds an app of its own (the `app` fixture,
    also through `client` or `client_for`): its own database, signing key and routes, a
    tenth to a third of a second each. Read from the fixtures a test asks for, so it cannot
    drift; `-m "not slow and not process and not app"` is the part that runs in a minute."""
    for item in items:
        if "app" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.app)


# Servers and CLI commands the tests start do not load the terminology content (a minute);
# tests/terminology loads it once for the run and asks for it where it wants it.
os.environ.setdefault("FHIR_TERMINOLOGY_LOAD", "false")
# The payers, clearinghouses and EHRs of the tests are processes and listeners on loopback,
# which the peer guard refuses unless allowed (tests/adapters/test_peer_guard.py tests the
# guard with settings of its own). Servers the tests start inherit this environment.
os.environ.setdefault("FHIR_PEER_ALLOWED_HOSTS", "127.0.0.1,localhost,::1")

@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """On the mongo engine: MONGODB_URI when set, else one embedded FerretDB for the run."""
    if ENGINE != "mongo":
        yield None
        return
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri
        return
    from tools.ferretdb.launcher import EmbeddedFerretDB

    db = EmbeddedFerretDB(data_dir=tmp_path_factory.mktemp("ferretdb"))
    try:
        yield db.start()
    finally:
        db.stop()


@pytest.fixture(scope="session")
def new_store(mongo_uri: str | None, tmp_path_factory: pytest.TempPathFactory) -> StoreFactory:
    """Makes fresh, empty stores (the caller drops them)."""

    def make() -> Store:
        return Store(data_dir=tmp_path_factory.mktemp("store"), mongo_uri=mongo_uri,
                     database=f"t_{uuid.uuid4().hex[:16]}")

    return make


@pytest.fixture
async def store(new_store: StoreFactory) -> AsyncIterator[Store]:
    """This test's own empty store, dropped afterwards."""
    made = new_store()
    yield made
    await made.drop()


@pytest.fixture
async def repo(store: Store) -> AsyncIterator[Repository]:
    """A repository opened on this test's own store (no app), closed afterwards."""
    repository = await open_repository(store.settings())
    try:
        yield repository
    finally:
        await repository.close()


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {}


@pytest.fixture
async def app(store: Store, settings_overrides: dict[str, object]) -> AsyncIterator[FastAPI]:
    """The app with its lifespan run, on a fresh database."""
    application = create_app(make_settings(store, **settings_overrides))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process over ASGI, with an admin backend token (system/*.cruds)."""
    async with fhir_client(app, await mint(app)) as http:
        yield http


@pytest.fixture
async def client_for(app: FastAPI) -> AsyncIterator[ClientFor]:
    """Clients of the same app with chosen grants: ``await client_for("patient/*.rs",
    patient=pid)``, ``await client_for("user/*.cruds", username="ann", role="billing")``,
    ``await client_for(None)`` (no token)."""
    opened: list[httpx.AsyncClient] = []

    async def make(scope: str | None, **grant: Any) -> httpx.AsyncClient:
        token = None if scope is None else await mint(
            app, scope, client_id=grant.pop("client_id", "test-app"), **grant)
        http = fhir_client(app, token)
        opened.append(http)
        return http

    yield make
    for http in opened:
        await http.aclose()


@pytest.fixture
def live_server(store: Store) -> Iterator[str]:
    """The server as a real process (python -m fhir_server serve) on a loopback port."""
    with server_process(store) as server:
        yield server.base


@pytest.fixture
async def live_headers(live_server: str, store: Store) -> dict[str, str]:
    """Headers with an admin token for the live_server process."""
    token = await mint_for_database(store, live_server)
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
