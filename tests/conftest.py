"""Test fixtures: a real database (embedded FerretDB or MONGODB_URI), one database per test."""

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
from fhir_server.config import Settings
from fhir_server.main import create_app
from fhir_server.storage.auth_store import AuthStore

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
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


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MONGODB_URI when set, else one embedded FerretDB for the whole run."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri
        return
    from fhir_server.embedded import EmbeddedFerretDB

    db = EmbeddedFerretDB(data_dir=tmp_path_factory.mktemp("ferretdb"))
    try:
        yield db.start()
    finally:
        db.stop()


@pytest.fixture
def db_name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def drop_after(mongo_uri: str, db_name: str) -> AsyncIterator[None]:
    yield
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri)
    try:
        await client.drop_database(db_name)
    finally:
        await client.close()


def make_settings(mongo_uri: str, db_name: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"mongodb_uri": mongo_uri, "mongodb_database": db_name,
                                 "fhir_base_url": BASE, **overrides}
    return Settings(**values)  # type: ignore[arg-type]


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
async def app(mongo_uri: str, db_name: str, drop_after: None,
              settings_overrides: dict[str, object]) -> AsyncIterator[FastAPI]:
    """The app with its lifespan run, on a fresh database."""
    application = create_app(make_settings(mongo_uri, db_name, **settings_overrides))
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


async def mint_for_database(mongo_uri: str, db_name: str, base_url: str,
                            scope: str = ADMIN_SCOPE, **grant: Any) -> str:
    """A token a server process on this database accepts (same keys, same issuer)."""
    settings = make_settings(mongo_uri, db_name, fhir_base_url=base_url)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        auth = await create_auth(store=AuthStore(db=mongo[db_name]), settings=settings)
        token: str = await auth.issue_access_token(
            Grant(client_id=grant.pop("client_id", ADMIN_CLIENT), scope=scope, **grant))
        return token
    finally:
        await mongo.close()


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
def server_process(mongo_uri: str, db_name: str, **env: str) -> Iterator[ServerProcess]:
    """``python -m fhir_server serve`` as a real process on a loopback port, ready."""
    port = free_port()
    full_env = {**os.environ, "MONGODB_URI": mongo_uri, "MONGODB_DATABASE": db_name,
                "FHIR_PORT": str(port), "FHIR_HOST": "127.0.0.1",
                "FHIR_BASE_URL": f"http://127.0.0.1:{port}/fhir", "FHIR_LOG_LEVEL": "WARNING",
                **env}
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve"], env=full_env,
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
def live_server(mongo_uri: str, db_name: str, drop_after: None) -> Iterator[str]:
    """The server as a real process (python -m fhir_server serve) on a loopback port."""
    with server_process(mongo_uri, db_name) as server:
        yield server.base


@pytest.fixture
async def live_headers(live_server: str, mongo_uri: str, db_name: str) -> dict[str, str]:
    """Headers with an admin token for the live_server process."""
    token = await mint_for_database(mongo_uri, db_name, live_server)
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
