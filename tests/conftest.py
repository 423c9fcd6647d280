"""Test fixtures: a real database, one per test, on the engine the run is for.

``FHIR_TEST_ENGINE`` chooses it: ``sqlite`` (the embedded default, a file per
test) or ``mongo`` (``MONGODB_URI`` when set, else one embedded FerretDB for the
run standing in for MongoDB, a database per test). ``make test`` runs both.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from fhir_server.auth.tokens import Grant, create_auth
from fhir_server.core.config import Settings
from fhir_server.main import create_app
from fhir_server.storage.auth_store import AuthStore
from fhir_server.storage.open import open_repository


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

ROOT = Path(__file__).resolve().parent.parent
BASE = "http://testserver/fhir"
# What the default test client may do: every interaction on every type (a backend
# client's system/*.*), through a real token verified on every request.
ADMIN_SCOPE = "system/*.cruds"
ADMIN_CLIENT = "test-admin"
# Bounds for server processes, with margin for a busy 2-core machine: no request to a server
# process may rely on httpx's 5 s default.
HTTP_TIMEOUT = 60.0  # one request
READY_TIMEOUT = 120.0  # process start to /ready 200 (start-up work included)
STOP_TIMEOUT = 60.0  # SIGTERM to exit (in-flight requests, audit flush, database stop)


ENGINE = os.environ.get("FHIR_TEST_ENGINE", "sqlite")
# Servers and CLI commands the tests start do not load the terminology content (a minute);
# tests/terminology loads it once for the run and asks for it where it wants it.
os.environ.setdefault("FHIR_TERMINOLOGY_LOAD", "false")
# The payers, clearinghouses and EHRs of the tests are processes and listeners on loopback,
# which the peer guard refuses unless allowed (tests/adapters/test_peer_guard.py tests the
# guard with settings of its own). Servers the tests start inherit this environment.
os.environ.setdefault("FHIR_PEER_ALLOWED_HOSTS", "127.0.0.1,localhost,::1")
if ENGINE not in ("sqlite", "mongo"):
    raise RuntimeError(f"FHIR_TEST_ENGINE must be sqlite or mongo, not {ENGINE!r}")
# Tests of the MongoDB engine's own machinery (staged writes, the FerretDB launcher) run in the
# mongo engine's run of the suite, which `make test` always makes.
mongo_only = pytest.mark.skipif(ENGINE != "mongo", reason="the mongo engine's run tests this")


@dataclass(frozen=True)
class Store:
    """Where one server's data lives: its FHIR_DATA_DIR (the SQLite file, the audit
    journal) and, on the mongo engine, its MongoDB database."""

    data_dir: Path
    mongo_uri: str | None = None
    database: str = "fhir"

    def settings(self, **overrides: object) -> Settings:
        # Terminology content (a minute to load) only where a test asks for it:
        # tests/terminology load it once per module.
        values: dict[str, object] = {"fhir_data_dir": self.data_dir, "fhir_base_url": BASE,
                                     "mongodb_uri": self.mongo_uri,
                                     "mongodb_database": self.database,
                                     "fhir_terminology_load": False, **overrides}
        return Settings(**values)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        """The environment of a server process on this store."""
        env = {"FHIR_DATA_DIR": str(self.data_dir)}
        if self.mongo_uri:
            env |= {"MONGODB_URI": self.mongo_uri, "MONGODB_DATABASE": self.database}
        return env

    async def drop(self) -> None:
        if self.mongo_uri:
            client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(self.mongo_uri)
            try:
                await client.drop_database(self.database)
            finally:
                await client.close()


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


StoreFactory = Callable[[], Store]


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


def make_settings(store: Store, **overrides: object) -> Settings:
    return store.settings(**overrides)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {}


async def mint(app: FastAPI, scope: str = ADMIN_SCOPE, *, client_id: str = ADMIN_CLIENT,
               **grant: Any) -> str:
    """A real access token from the app's own authorization server."""
    token: str = await app.state.auth.issue_access_token(
        Grant(client_id=client_id, scope=scope, **grant))
    return token


def fhir_client(app: FastAPI, token: str | None, **kwargs: Any) -> httpx.AsyncClient:
    """An ASGI client of the app, carrying ``token`` (None: no Authorization header)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"Accept": "application/fhir+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(transport=transport, base_url=BASE + "/", headers=headers,
                             **kwargs)


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


ClientFor = Callable[..., Awaitable[httpx.AsyncClient]]


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


async def mint_for_database(store: Store, base_url: str, scope: str = ADMIN_SCOPE,
                            **grant: Any) -> str:
    """A token a server process on this store accepts (same keys, same issuer)."""
    settings = make_settings(store, fhir_base_url=base_url)
    repo = await open_repository(settings)
    try:
        auth = await create_auth(store=AuthStore(records=repo.records), settings=settings)
        token: str = await auth.issue_access_token(
            Grant(client_id=grant.pop("client_id", ADMIN_CLIENT), scope=scope, **grant))
        return token
    finally:
        await repo.close()


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen[Any], timeout: float = READY_TIMEOUT) -> None:
    """Until ``GET base/ready`` answers 200 (RuntimeError if the process exits or times out).

    ``/ready`` answers 503 while the server's start-up work runs; ``/health`` before that.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server process exited with {proc.returncode} during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server process was not ready within {timeout:g} s")
        time.sleep(0.1)


def server_env(store: Store, port: int, **env: str) -> dict[str, str]:
    """The environment of ``python -m fhir_server serve`` on ``store`` and a loopback port."""
    full = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DATABASE")}
    return {**full, **store.env(), "FHIR_PORT": str(port), "FHIR_HOST": "127.0.0.1",
            "FHIR_BASE_URL": f"http://127.0.0.1:{port}/fhir", "FHIR_LOG_LEVEL": "WARNING",
            "FHIR_WORKERS": "1", **env}


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                 timeout: float = STOP_TIMEOUT) -> int:
    """Send ``sig`` and wait for the exit code; a process still running after ``timeout`` is
    killed (never left behind) and the test fails."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the process did not stop within {timeout:g} s of {sig}") from None


@contextmanager
def server_process(store: Store, **env: str) -> Iterator[ServerProcess]:
    """``python -m fhir_server serve`` as a real process on a loopback port, ready."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve"],
                            env=server_env(store, port, **env),
                            cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield ServerProcess(base=f"{base}/fhir", proc=proc)
    finally:
        stop_process(proc)


@dataclass(frozen=True)
class ServerProcess:
    base: str  # the FHIR base URL
    proc: subprocess.Popen[bytes]


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
