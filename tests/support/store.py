"""A real database for a test, on the engine the run is for, and clients of the app on it.

``FHIR_TEST_ENGINE`` chooses it: ``sqlite`` (the embedded default, a file per test) or
``mongo`` (``MONGODB_URI`` when set, else one embedded FerretDB for the run standing in for
MongoDB, a database per test). The fixtures that make them are in tests/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from fhir_server.auth.tokens import Grant, create_auth
from fhir_server.core.config import Settings
from fhir_server.storage.auth_store import AuthStore
from fhir_server.storage.open import open_repository

ROOT = Path(__file__).resolve().parent.parent.parent
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


StoreFactory = Callable[[], Store]
ClientFor = Callable[..., Awaitable[httpx.AsyncClient]]


def make_settings(store: Store, **overrides: object) -> Settings:
    return store.settings(**overrides)


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


async def mint_for_database(store: Store, base_url: str, scope: str = ADMIN_SCOPE, *,
                            lifetime: int = 3600, **grant: Any) -> str:
    """A token a server process on this store accepts (same keys, same issuer), valid for
    ``lifetime`` seconds."""
    settings = make_settings(store, fhir_base_url=base_url)
    repo = await open_repository(settings)
    try:
        auth = await create_auth(store=AuthStore(records=repo.records), settings=settings)
        token: str = await auth.issue_access_token(
            Grant(client_id=grant.pop("client_id", ADMIN_CLIENT), scope=scope, **grant),
            lifetime=lifetime)
        return token
    finally:
        await repo.close()
