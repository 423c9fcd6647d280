"""FHIR_SIGNING_KEY_FILE: tokens signed by a key held outside the database; a rotation
through FHIR_SIGNING_KEY_VERIFY_FILES; a key file others can read is refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwk

from fhir_server.auth.tokens import Grant
from fhir_server.main import create_app
from tests.support.server_process import serve_until_exit
from tests.support.store import ADMIN_CLIENT, ADMIN_SCOPE, Store, fhir_client, make_settings, mint


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rfc7638_kid(public: dict[str, Any]) -> str:
    """The thumbprint of RFC 7638, section 3: the required members, sorted, no spaces."""
    members = ("e", "kty", "n") if public["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: public[m] for m in members}, separators=(",", ":"),
                           sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def key_file(folder: Path, name: str, kty: str = "RSA", mode: int = 0o600) -> tuple[Path, str]:
    """A new private key in PEM as ``folder/name`` with ``mode``; the file and its kid."""
    key = jwk.generate_key("RSA", 2048) if kty == "RSA" else jwk.generate_key("EC", "P-384")
    path = folder / name
    path.write_bytes(key.as_pem(private=True))
    path.chmod(mode)
    return path, rfc7638_kid(key.as_dict(private=False))


@asynccontextmanager
async def running(store: Store, **settings: Any) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(store, **settings))
    async with app.router.lifespan_context(app):
        yield app


async def status_with(app: FastAPI, token: str) -> int:
    async with fhir_client(app, token) as http:
        return (await http.get("Patient")).status_code


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


async def jwks_kids(app: FastAPI) -> list[str]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return [k["kid"] for k in (await http.get("/auth/jwks")).json()["keys"]]


SHORT = 8  # seconds: a token that expires while the test runs (it is checked once, right after
# an in-process restart of a second or two: 8 s leaves margin on a busy machine)


@pytest.mark.slow
async def test_rotation_keeps_old_tokens_until_they_expire(store: Store,
                                                           tmp_path: Path) -> None:
    old, old_kid = key_file(tmp_path, "old.pem")
    new, new_kid = key_file(tmp_path, "new.pem")
    async with running(store, fhir_signing_key_file=old) as app:
        short = await app.state.auth.issue_access_token(
            Grant(client_id=ADMIN_CLIENT, scope=ADMIN_SCOPE), lifetime=SHORT)
        short_exp = time.time() + SHORT
        long = await mint(app)
        assert kid_of(long) == old_kid
        assert await jwks_kids(app) == [old_kid]
    async with running(store, fhir_signing_key_file=new,
                       fhir_signing_key_verify_files=[old]) as app:
        fresh = await mint(app)
        assert kid_of(fresh) == new_kid
        assert await jwks_kids(app) == [new_kid, old_kid]
        for name, token in {"short": short, "long": long, "fresh": fresh}.items():
            assert await status_with(app, token) == 200, name
        await asyncio.sleep(short_exp + 1 - time.time())  # past the short token's exp
        assert await status_with(app, short) == 401
        assert await status_with(app, long) == 200
    async with running(store, fhir_signing_key_file=new) as app:  # the old key dropped
        assert await status_with(app, long) == 401
        assert await status_with(app, fresh) == 200


async def test_database_keys_do_not_verify_with_a_key_file(store: Store,
                                                           tmp_path: Path) -> None:
    async with running(store) as app:
        from_database = await mint(app)
        database_kid = kid_of(from_database)
    path, kid = key_file(tmp_path, "es384.pem", kty="EC")
    async with running(store, fhir_signing_key_file=path,
                       fhir_auth_signing_alg="ES384") as app:
        assert await jwks_kids(app) == [kid] != [database_kid]
        assert await status_with(app, from_database) == 401
        token = await mint(app)
        assert kid_of(token) == kid
        assert await status_with(app, token) == 200


def serve_fails(store: Store, **env: str) -> str:
    """``fhir-server serve`` with ``env``: it must exit non-zero; its stderr."""
    code, output = serve_until_exit(store, **env)
    assert code != 0
    return output


@pytest.mark.process
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["0644", "0640", "0604"])
def test_a_key_file_others_can_read_is_refused(store: Store, tmp_path: Path,
                                               mode: int) -> None:
    path, _ = key_file(tmp_path, "loose.pem", mode=mode)
    stderr = serve_fails(store, FHIR_SIGNING_KEY_FILE=str(path))
    assert f"{mode:04o}" in stderr and "chmod 600" in stderr, stderr
    assert path.read_bytes().decode() not in stderr


@pytest.mark.process
def test_a_key_for_another_algorithm_is_refused(store: Store, tmp_path: Path) -> None:
    path, _ = key_file(tmp_path, "ec.pem", kty="EC")
    stderr = serve_fails(store, FHIR_SIGNING_KEY_FILE=str(path),
                         FHIR_AUTH_SIGNING_ALG="RS256")
    assert "ES384" in stderr and "RS256" in stderr, stderr


@pytest.mark.process
def test_a_missing_key_file_is_refused(store: Store, tmp_path: Path) -> None:
    stderr = serve_fails(store, FHIR_SIGNING_KEY_FILE=str(tmp_path / "absent.pem"))
    assert "absent.pem" in stderr, stderr
