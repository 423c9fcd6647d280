"""SMART Backend Services (client_credentials + private_key_jwt), introspection and key rotation."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwk, jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from fhir_server.auth.clients import register_client
from fhir_server.auth.tokens import Grant
from tests.auth.flow_helpers import BASE, ORIGIN, TOKEN, create, running_app, service
from tests.support.store import Store

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
async def app_http(store: Store) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(store) as pair:
        yield pair


def new_key(kind: str) -> RSAKey | ECKey:
    kid = secrets.token_hex(6)
    if kind == "RS384":
        return jwk.generate_key("RSA", 2048, parameters={"kid": kid})
    return jwk.generate_key("EC", "P-384", parameters={"kid": kid})


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def assertion(key: RSAKey | ECKey, alg: str, client_id: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN, "exp": now + 240,
              "jti": secrets.token_urlsafe(12), **overrides}
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


async def client_credentials(http: httpx.AsyncClient, signed: str,
                             scope: str = "system/Patient.rs") -> httpx.Response:
    return await http.post(TOKEN, data={"grant_type": "client_credentials", "scope": scope,
                                        "client_assertion_type": ASSERTION_TYPE,
                                        "client_assertion": signed})


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
async def test_backend_services(app_http: tuple[FastAPI, httpx.AsyncClient], alg: str) -> None:
    app, http = app_http
    key = new_key(alg)
    client, _ = await register_client(store=service(app).store, name="backend", scope="system/*.rs",
                                      redirect_uris=[], jwks=public_jwks(key))
    cid = client.client_id
    events: list[Any] = []

    async def hook(event: Any) -> None:
        events.append(event)

    service(app).on_login(hook)
    patient = await create(app, http, {"resourceType": "Patient", "name": [{"family": "Sys"}]})
    signed = assertion(key, alg, cid)
    ok = await client_credentials(http, signed)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "system/Patient.rs"
    assert 0 < body["expires_in"] <= 300 and "refresh_token" not in body
    read = await http.get(f"{BASE}/Patient/{patient}",
                          headers={"Authorization": f"Bearer {body['access_token']}"})
    assert read.status_code == 200 and read.json()["id"] == patient
    grant = await service(app).verify_access_token(body["access_token"])
    assert (grant.client_id, grant.username, grant.scope) == (cid, None, "system/Patient.rs")
    assert (events[-1].success, events[-1].client_id, events[-1].kind) == (True, cid, "client")

    def refused(response: httpx.Response) -> None:
        assert response.status_code in (400, 401), response.text
        assert response.json()["error"] == "invalid_client"

    refused(await client_credentials(http, signed))  # replayed jti
    refused(await client_credentials(http, assertion(key, alg, cid, aud=f"{ORIGIN}/auth/other")))
    refused(await client_credentials(http, assertion(key, alg, cid, exp=int(time.time()) + 600)))
    refused(await client_credentials(http, assertion(key, alg, cid, exp=int(time.time()) - 5)))
    refused(await client_credentials(http, assertion(key, alg, cid, sub="someone-else")))
    refused(await client_credentials(http, assertion(new_key(alg), alg, cid)))  # unregistered key
    wrong_alg = "RS256" if alg == "RS384" else "ES256"
    other = (jwk.generate_key("RSA", 2048, parameters={"kid": key.kid}) if alg == "RS384"
             else jwk.generate_key("EC", "P-256", parameters={"kid": key.kid}))
    refused(await client_credentials(http, assertion(other, wrong_alg, cid)))
    assert events[-1].success is False
    # Only system/ scopes, and only those the client may have.
    scoped = await client_credentials(http, assertion(key, alg, cid), scope="patient/*.rs")
    assert scoped.json()["error"] == "invalid_scope"
    wider = await client_credentials(http, assertion(key, alg, cid), scope="system/Patient.cruds")
    assert wider.status_code == 200 and wider.json()["scope"] == "system/Patient.rs"


class _JwksHandler(BaseHTTPRequestHandler):
    jwks: ClassVar[dict[str, Any]] = {}
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = json.dumps(type(self).jwks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, type[_JwksHandler]]]:
    handler = type("Handler", (_JwksHandler,), {"jwks": {}, "hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", handler
    finally:
        server.shutdown()
        server.server_close()


async def test_backend_keys_from_jwks_url(app_http: tuple[FastAPI, httpx.AsyncClient],
                                          jwks_server: tuple[str, type[_JwksHandler]]) -> None:
    app, http = app_http
    url, handler = jwks_server
    first = new_key("ES384")
    handler.jwks = public_jwks(first)
    client, _ = await register_client(store=service(app).store, name="backend", scope="system/*.rs",
                                      redirect_uris=[], jwks_url=url)
    ok = await client_credentials(http, assertion(first, "ES384", client.client_id))
    assert ok.status_code == 200, ok.text
    again = await client_credentials(http, assertion(first, "ES384", client.client_id))
    assert again.status_code == 200 and handler.hits == 1  # cached
    # The client rotates its key: an unknown kid refetches the set (at most every 10 s).
    second = new_key("RS384")
    handler.jwks = public_jwks(second)
    rotated = await client_credentials(http, assertion(second, "RS384", client.client_id))
    assert rotated.json()["error"] == "invalid_client" and handler.hits == 1  # within 10 s


async def test_jwks_url_refetched_after_ttl(store: Store,
                                            jwks_server: tuple[str, type[_JwksHandler]]) -> None:
    url, handler = jwks_server
    async with running_app(store, fhir_auth_jwks_cache_seconds=0) as (app, http):
        first = new_key("ES384")
        handler.jwks = public_jwks(first)
        client, _ = await register_client(store=service(app).store, name="backend",
                                          scope="system/*.rs", redirect_uris=[], jwks_url=url)
        ok = await client_credentials(http, assertion(first, "ES384", client.client_id))
        assert ok.status_code == 200, ok.text
        second = new_key("RS384")
        handler.jwks = public_jwks(second)
        rotated = await client_credentials(http, assertion(second, "RS384", client.client_id))
        assert rotated.status_code == 200, rotated.text
        assert handler.hits == 2
        gone = await client_credentials(http, assertion(first, "ES384", client.client_id))
        assert gone.json()["error"] == "invalid_client"


async def test_a_jwks_url_is_fetched_through_the_peer_guard_and_bounded(
        store: Store, jwks_server: tuple[str, type[_JwksHandler]]) -> None:
    """A client's JWKS URL is data: on a loopback address not allowed by
    FHIR_PEER_ALLOWED_HOSTS nothing is fetched, and a set larger than any JWK Set is not
    read whole; either way the client is not authenticated."""
    url, handler = jwks_server
    key = new_key("ES384")
    handler.jwks = public_jwks(key)
    async with running_app(store, fhir_peer_allowed_hosts="") as (app, http):
        client, _ = await register_client(store=service(app).store, name="backend",
                                          scope="system/*.rs", redirect_uris=[], jwks_url=url)
        refused = await client_credentials(http, assertion(key, "ES384", client.client_id))
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"
        assert handler.hits == 0
    async with running_app(store) as (app, http):
        client, _ = await register_client(store=service(app).store, name="backend-2",
                                          scope="system/*.rs", redirect_uris=[], jwks_url=url)
        ok = await client_credentials(http, assertion(key, "ES384", client.client_id))
        assert ok.status_code == 200, ok.text
    handler.jwks = {**public_jwks(key), "padding": "x" * (300 * 1024)}
    async with running_app(store) as (app, http):  # a fresh cache
        client, _ = await register_client(store=service(app).store, name="backend-3",
                                          scope="system/*.rs", redirect_uris=[], jwks_url=url)
        large = await client_credentials(http, assertion(key, "ES384", client.client_id))
        assert large.status_code == 400 and large.json()["error"] == "invalid_client"


async def test_introspection_callers(app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    store = service(app).store
    public, _ = await register_client(store=store, name="p", scope="patient/*.rs",
                                      redirect_uris=["https://a.example/cb"])
    confidential, secret = await register_client(store=store, name="c", scope="patient/*.rs",
                                                 redirect_uris=["https://a.example/cb"],
                                                 confidential=True)
    assert secret is not None
    token = await service(app).issue_access_token(Grant(
        client_id=public.client_id, scope="patient/*.rs", username="u1", role="patient",
        patient="p1", fhir_user="Patient/p1"))
    url = f"{ORIGIN}/auth/introspect"
    as_public = await http.post(url, data={"token": token, "client_id": public.client_id})
    assert as_public.status_code == 401
    anonymous = await http.post(url, data={"token": token})
    assert anonymous.status_code in (400, 401)
    ok = await http.post(url, data={"token": token}, auth=(confidential.client_id, secret))
    info = ok.json()
    assert info["active"] is True
    assert (info["client_id"], info["sub"], info["patient"], info["fhirUser"], info["scope"]) == (
        public.client_id, "u1", "p1", "Patient/p1", "patient/*.rs")
    assert info["exp"] > time.time()
    admin = await service(app).issue_access_token(Grant(client_id="ops", scope="user/*.rs",
                                                        username="root", role="admin"))
    by_admin = await http.post(url, data={"token": token},
                               headers={"Authorization": f"Bearer {admin}"})
    assert by_admin.json()["active"] is True
    clerk = await service(app).issue_access_token(Grant(client_id="ops", scope="user/*.rs",
                                                        username="c", role="front-desk"))
    by_clerk = await http.post(url, data={"token": token},
                               headers={"Authorization": f"Bearer {clerk}"})
    assert by_clerk.status_code == 401
    garbage = await http.post(url, data={"token": "not-a-token"}, auth=(confidential.client_id, secret))
    assert garbage.json() == {"active": False}
    # Another client's token cannot be revoked by this one; the admin can.
    other = await http.post(f"{ORIGIN}/auth/revoke", data={"token": token},
                            auth=(confidential.client_id, secret))
    assert other.status_code == 400 and other.json()["error"] == "invalid_client"
    revoked = await http.post(f"{ORIGIN}/auth/revoke", data={"token": token},
                              headers={"Authorization": f"Bearer {admin}"})
    assert revoked.status_code == 200
    after = await http.post(url, data={"token": token}, auth=(confidential.client_id, secret))
    assert after.json() == {"active": False}


async def test_key_rotation(app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    auth = service(app)
    grant = Grant(client_id="c1", scope="system/*.rs")
    old = await auth.issue_access_token(grant)
    old_kid = jwt.decode(old, KeySet.import_key_set((await http.get(f"{ORIGIN}/auth/jwks")).json())
                         ).header["kid"]
    new_key_ = await auth.keys.rotate()
    assert new_key_.kid != old_kid
    new = await auth.issue_access_token(grant)
    jwks = (await http.get(f"{ORIGIN}/auth/jwks")).json()
    assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_key_.kid}
    keyset = KeySet.import_key_set(jwks)
    assert jwt.decode(new, keyset).header["kid"] == new_key_.kid
    assert jwt.decode(old, keyset).header["kid"] == old_kid
    assert (await auth.verify_access_token(old)).client_id == "c1"
    assert (await auth.verify_access_token(new)).client_id == "c1"
    read = await http.get(f"{BASE}/Patient", headers={"Authorization": f"Bearer {old}"})
    assert read.status_code == 200
