"""FHIR_KEY_ENCRYPTION_KEY: the token signing keys in the database are stored sealed, keys
stored in the clear before are sealed at the next start, and a database of sealed keys is
refused without the right key-encryption key."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI

from fhir_server.auth.key_sealing import KeySealError
from fhir_server.main import create_app
from tests.support.store import Store, fhir_client, make_settings, mint


def new_kek() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@asynccontextmanager
async def running(store: Store, **settings: Any) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(store, **settings))
    async with app.router.lifespan_context(app):
        yield app


async def stored_keys(app: FastAPI) -> list[dict[str, Any]]:
    return list(await app.state.repo.records.all(kind="auth_keys"))


async def accepted(app: FastAPI, token: str) -> bool:
    async with fhir_client(app, token) as http:
        return (await http.get("Patient")).status_code == 200


def database_bytes(store: Store) -> bytes:
    return b"".join(p.read_bytes() for p in store.data_dir.glob("fhir.sqlite3*"))


async def test_keys_are_stored_sealed(store: Store) -> None:
    async with running(store, fhir_key_encryption_key=new_kek()) as app:
        token = await mint(app)
        [doc] = await stored_keys(app)
        assert doc.get("pem") is None and doc["sealed"]
        assert "PRIVATE KEY" not in str(doc)
        assert await accepted(app, token)
    if store.mongo_uri is None:  # nothing of a private key anywhere in the database's files
        assert b"PRIVATE KEY" not in database_bytes(store)


async def test_keys_in_the_clear_are_sealed_at_the_next_start(store: Store) -> None:
    async with running(store) as app:
        token = await mint(app)
        [before] = await stored_keys(app)
        assert "PRIVATE KEY" in before["pem"]
    kek = new_kek()
    async with running(store, fhir_key_encryption_key=kek) as app:
        [after] = await stored_keys(app)
        assert after["_id"] == before["_id"]
        assert after.get("pem") is None and after["sealed"]
        assert await accepted(app, token)  # the same key, now sealed
    async with running(store, fhir_key_encryption_key=kek) as app:
        assert await accepted(app, token)


@pytest.mark.parametrize("kek", [None, "another"])
async def test_sealed_keys_need_the_same_key_encryption_key(store: Store,
                                                            kek: str | None) -> None:
    async with running(store, fhir_key_encryption_key=new_kek()):
        pass
    other = new_kek() if kek == "another" else None
    app = create_app(make_settings(store, fhir_key_encryption_key=other))
    with pytest.raises(KeySealError, match="FHIR_KEY_ENCRYPTION_KEY"):
        async with app.router.lifespan_context(app):
            pass
