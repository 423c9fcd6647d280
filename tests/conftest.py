"""Test fixtures: a real database (embedded FerretDB or MONGODB_URI), one database per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient

from fhir_server.config import Settings
from fhir_server.main import create_app

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
BASE = "http://testserver/fhir"


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


@pytest.fixture
async def client(mongo_uri: str, db_name: str, drop_after: None,
                 settings_overrides: dict[str, object]) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process over ASGI, with its lifespan run, on a fresh database."""
    app = create_app(make_settings(mongo_uri, db_name, **settings_overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            http.headers["Accept"] = "application/fhir+json"
            yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server process did not become ready")
            time.sleep(0.1)
        yield ServerProcess(base=f"{base}/fhir", proc=proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=15)


@dataclass(frozen=True)
class ServerProcess:
    base: str  # the FHIR base URL
    proc: subprocess.Popen[bytes]


@pytest.fixture
def live_server(mongo_uri: str, db_name: str, drop_after: None) -> Iterator[str]:
    """The server as a real process (python -m fhir_server serve) on a loopback port."""
    with server_process(mongo_uri, db_name) as server:
        yield server.base
