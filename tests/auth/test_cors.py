"""CORS for browser SMART apps, over HTTP against the app: preflights, the headers of actual
answers, an origin's tokens bound to its clients, the token endpoint, and the settings.
(A real browser runs the whole launch in tests/auth/test_cors_browser.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pydantic
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from fhir_server.audit.events import CLIENT_SYSTEM, INTERACTION
from fhir_server.auth.clients import register_client
from fhir_server.auth.tokens import Grant
from fhir_server.core.config import Settings
from fhir_server.storage.auth_store import AuthStore
from fhir_server.storage.open import open_repository
from tests.auth.flow_helpers import (
    BASE,
    ORIGIN,
    TOKEN,
    AuthorizeParams,
    code_from,
    create,
    login,
    pkce,
    running_app,
    service,
    user,
)
from tests.support.store import Store, make_settings

APP_ORIGIN = "https://app.example.org"
APP_REDIRECT = f"{APP_ORIGIN}/smart/callback"
OTHER_ORIGIN = "http://127.0.0.1:8731"  # another registered client's (an explicit --origin)
STRANGER = "https://evil.example"
GLOBAL_ORIGIN = "https://launcher.example.net"
MAX_AGE = 321
SCOPE = "openid fhirUser launch/patient patient/*.rs"


@pytest.fixture
async def app_http(store: Store) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(store, fhir_cors_origins=GLOBAL_ORIGIN, fhir_cors_max_age=MAX_AGE,
                           fhir_cors_refresh_seconds=0) as pair:
        yield pair


async def register(app: FastAPI, *, redirect: str, origins: tuple[str, ...] = ()) -> str:
    client, _ = await register_client(store=service(app).store, name="Browser app", scope=SCOPE,
                                      redirect_uris=[redirect], origins=list(origins))
    return client.client_id


async def patient_token(app: FastAPI, client_id: str, patient: str) -> str:
    return await service(app).issue_access_token(
        Grant(client_id=client_id, scope="patient/*.rs", patient=patient))


async def preflight(http: httpx.AsyncClient, origin: str, method: str = "GET",
                    headers: str = "authorization") -> httpx.Response:
    return await http.options(f"{BASE}/Patient/x", headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers})


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


async def test_preflight_allowed_for_registered_and_configured_origins(
        app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    await register(app, redirect=APP_REDIRECT)
    await register(app, redirect="com.example.native:/cb", origins=(OTHER_ORIGIN + "/",))
    for origin in (APP_ORIGIN, OTHER_ORIGIN, GLOBAL_ORIGIN):
        answer = await http.options(f"{BASE}/Patient", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,if-none-exist,prefer"})
        assert answer.status_code == 204, (origin, answer.text)
        assert answer.headers["access-control-allow-origin"] == origin
        assert "access-control-allow-credentials" not in answer.headers
        assert {"post", "put", "patch", "delete", "get"} <= listed(
            answer.headers["access-control-allow-methods"])
        assert {"authorization", "content-type", "prefer", "if-match", "if-none-exist",
                "x-request-id"} <= listed(answer.headers["access-control-allow-headers"])
        assert answer.headers["access-control-max-age"] == str(MAX_AGE)
        assert "origin" in listed(answer.headers["vary"])
        assert answer.content == b""
    # The token endpoint answers preflights too (an app adding a header to its POST).
    token = await http.options(TOKEN, headers={"Origin": APP_ORIGIN,
                                               "Access-Control-Request-Method": "POST"})
    assert token.status_code == 204 and token.headers["access-control-allow-origin"] == APP_ORIGIN


async def test_an_internal_error_reaches_a_browser_app_with_cors_headers(
        app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """A 500 is an OperationOutcome the app can read, not a network error: answered where
    CORS still adds its headers."""
    app, http = app_http
    await register(app, redirect=APP_REDIRECT)

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.router.routes.insert(0, APIRoute("/fhir/broken-probe", broken, methods=["GET"]))
    answer = await http.get(f"{BASE}/broken-probe", headers={"Origin": APP_ORIGIN})
    assert answer.status_code == 500, answer.text
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "x-request-id" in listed(answer.headers["access-control-expose-headers"])
    [issue] = answer.json()["issue"]
    assert issue["code"] == "exception" and "a bug" not in answer.text
    assert answer.headers["X-Request-Id"] in issue["diagnostics"]


async def test_preflight_refused_for_other_origins(
        app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    await register(app, redirect=APP_REDIRECT)
    # A different port, scheme or host is another origin; "null" (a sandboxed frame) none.
    for origin in (STRANGER, "https://app.example.org:8443", "http://app.example.org", "null"):
        answer = await preflight(http, origin)
        assert answer.status_code == 403, origin
        assert not any(h.startswith("access-control-") for h in answer.headers), origin
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert "origin" in listed(answer.headers["vary"])
    # Outside /fhir and /auth there is no CORS: OPTIONS stays unsupported.
    health = await http.options(f"{ORIGIN}/health", headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET"})
    assert health.status_code == 405 and "access-control-allow-origin" not in health.headers


async def test_actual_request_exposes_headers_to_the_clients_origin(
        app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    client_id = await register(app, redirect=APP_REDIRECT)
    family = f"Cors{time.monotonic_ns()}"
    pid = await create(app, http, {"resourceType": "Patient", "name": [{"family": family}]})
    token = await patient_token(app, client_id, pid)
    read = await http.get(f"{BASE}/Patient/{pid}", headers={
        "Origin": APP_ORIGIN, "Authorization": f"Bearer {token}"})
    assert read.status_code == 200, read.text
    assert read.json()["name"][0]["family"] == family
    assert read.headers["access-control-allow-origin"] == APP_ORIGIN
    assert {"location", "etag", "content-location"} <= listed(
        read.headers["access-control-expose-headers"])
    assert read.headers["etag"] == f'W/"{read.json()["meta"]["versionId"]}"'
    assert "origin" in listed(read.headers["vary"])
    assert "access-control-allow-credentials" not in read.headers
    # Without an Origin (not a browser's cross-origin call): no CORS headers, still Vary.
    plain = await http.get(f"{BASE}/Patient/{pid}", headers={"Authorization": f"Bearer {token}"})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
    assert "origin" in listed(plain.headers["vary"])
    # The server's own origin is no cross-origin call: served, no CORS headers.
    own = await http.get(f"{BASE}/Patient/{pid}", headers={
        "Origin": ORIGIN, "Authorization": f"Bearer {token}"})
    assert own.status_code == 200 and "access-control-allow-origin" not in own.headers
    # The public discovery document is readable from the app's origin before it has a token.
    smart = await http.get(f"{BASE}/.well-known/smart-configuration", headers={"Origin": APP_ORIGIN})
    assert smart.status_code == 200 and smart.headers["access-control-allow-origin"] == APP_ORIGIN


async def test_a_token_is_refused_from_an_origin_that_is_not_its_clients(
        app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    app_client = await register(app, redirect=APP_REDIRECT)
    other_client = await register(app, redirect=f"{OTHER_ORIGIN}/cb")
    pid = await create(app, http, {"resourceType": "Patient", "name": [{"family": "Origin"}]})
    token = await service(app).issue_access_token(
        Grant(client_id=app_client, scope="patient/*.cruds", patient=pid))
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    observation = {"resourceType": "Observation", "status": "final",
                   "code": {"text": "cors"}, "subject": {"reference": f"Patient/{pid}"}}
    # From another client's origin: 403 before anything is done (the page may read why).
    wrong = await http.post(f"{BASE}/Observation", json=observation,
                            headers={**auth, "Origin": OTHER_ORIGIN})
    assert wrong.status_code == 403, wrong.text
    assert app_client in wrong.json()["issue"][0]["diagnostics"]
    assert wrong.headers["access-control-allow-origin"] == OTHER_ORIGIN
    # From an origin nobody registered: 403, and nothing the page could read.
    stranger = await http.post(f"{BASE}/Observation", json=observation,
                               headers={**auth, "Origin": STRANGER})
    assert stranger.status_code == 403 and "access-control-allow-origin" not in stranger.headers
    assert (await http.get(f"{BASE}/Observation", params={"subject": f"Patient/{pid}"},
                           headers=auth)).json()["total"] == 0
    # Both refusals are in the audit trail, as the client's failed creates.
    await app.state.audit.flush()
    auditor = await service(app).issue_access_token(
        Grant(client_id="auditor", scope="system/AuditEvent.rs"))
    audit = await http.get(f"{BASE}/AuditEvent", headers={
        "Authorization": f"Bearer {auditor}"}, params={
        "agent:identifier": f"{CLIENT_SYSTEM}|{app_client}", "subtype": f"{INTERACTION}|create"})
    assert [e["resource"]["outcome"] for e in audit.json()["entry"]] == ["4", "4"]
    # The other client's own token works from its origin; FHIR_CORS_ORIGINS serves every client.
    other_token = await patient_token(app, other_client, pid)
    for origin, bearer in ((OTHER_ORIGIN, other_token), (GLOBAL_ORIGIN, token), (APP_ORIGIN, token)):
        read = await http.get(f"{BASE}/Patient/{pid}", headers={
            "Origin": origin, "Authorization": f"Bearer {bearer}"})
        assert read.status_code == 200 and read.headers["access-control-allow-origin"] == origin
    made = await http.post(f"{BASE}/Observation", json=observation,
                           headers={**auth, "Origin": APP_ORIGIN})
    assert made.status_code == 201, made.text
    assert made.headers["access-control-allow-origin"] == APP_ORIGIN


async def test_token_endpoint_from_the_clients_origin_only(
        app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    client_id = await register(app, redirect=APP_REDIRECT)
    await register(app, redirect=f"{OTHER_ORIGIN}/cb")
    pid = await create(app, http, {"resourceType": "Patient", "name": [{"family": "Token"}]})
    await user(app, "corsy", "patient", patients=(pid,))
    verifier, challenge = pkce()
    params = AuthorizeParams(client_id=client_id, challenge=challenge, scope=SCOPE,
                             redirect_uri=APP_REDIRECT)
    code = code_from(await login(http, params, username="corsy"), params)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT,
            "code_verifier": verifier, "client_id": client_id}
    # Another client's page cannot redeem it, and trying does not spend the code.
    for origin in (OTHER_ORIGIN, STRANGER):
        refused = await http.post(TOKEN, data=form, headers={"Origin": origin})
        assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    answer = await http.post(TOKEN, data=form, headers={"Origin": APP_ORIGIN})
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    assert answer.json()["patient"] == pid
    # Revocation (an app's sign-out) follows the same rule.
    access = answer.json()["access_token"]
    revoke = {"token": access, "client_id": client_id}
    other = await http.post(f"{ORIGIN}/auth/revoke", data=revoke, headers={"Origin": OTHER_ORIGIN})
    assert other.status_code == 400 and other.json()["error"] == "unauthorized_client"
    bearer = {"Authorization": f"Bearer {access}"}
    assert (await http.get(f"{BASE}/Patient/{pid}", headers=bearer)).status_code == 200
    revoked = await http.post(f"{ORIGIN}/auth/revoke", data=revoke, headers={"Origin": APP_ORIGIN})
    assert revoked.status_code == 200 and revoked.headers["access-control-allow-origin"] == APP_ORIGIN
    assert (await http.get(f"{BASE}/Patient/{pid}", headers=bearer)).status_code == 401


async def test_clients_added_elsewhere_are_allowed_after_the_refresh(store: Store) -> None:
    async with running_app(store, fhir_cors_refresh_seconds=0.5) as (_app, http):
        assert (await preflight(http, APP_ORIGIN)).status_code == 403
        # Another process (the CLI) registers the client in the same database.
        repo = await open_repository(make_settings(store))
        try:
            await register_client(store=AuthStore(records=repo.records), name="Later",
                                  scope=SCOPE, redirect_uris=[APP_REDIRECT])
        finally:
            await repo.close()
        deadline = time.monotonic() + 10
        while (status := (await preflight(http, APP_ORIGIN)).status_code) == 403:
            assert time.monotonic() < deadline, "the new client's origin was never allowed"
            await asyncio.sleep(0.1)
        assert status == 204


def test_cors_origin_settings_are_checked_and_normalised() -> None:
    settings = Settings(fhir_cors_origins=" HTTPS://App.Example.org:443/ , http://[::1]:3000,"
                        "http://localhost:80")
    assert settings.cors_origins == ("https://app.example.org", "http://[::1]:3000",
                                     "http://localhost")
    for bad in ("*", "null", "https://app.example.org/path", "ftp://files.example",
                "https://user@app.example.org", "app.example.org"):
        with pytest.raises(pydantic.ValidationError):
            Settings(fhir_cors_origins=bad)


async def test_client_origins_are_checked(app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, _ = app_http
    with pytest.raises(ValueError, match="not a web origin"):
        await register(app, redirect=APP_REDIRECT, origins=("https://x.example/app",))
    client, _ = await register_client(
        store=service(app).store, name="Two", scope=SCOPE, origins=["HTTP://Extra.Example:8080"],
        redirect_uris=[APP_REDIRECT, "https://app.example.org/other", "com.example:/cb"])
    assert client.web_origins == (APP_ORIGIN, "http://extra.example:8080")


async def test_without_access_control_origins_still_decide_what_a_page_reads(store: Store) -> None:
    """FHIR_AUTH=off (local experiments): no token, so no client to check, but only the
    registered origins get CORS headers."""
    async with running_app(store, fhir_auth="off") as (app, http):
        await register(app, redirect=APP_REDIRECT)
        pid = await create(app, http, {"resourceType": "Patient", "name": [{"family": "Off"}]})
        mine = await http.get(f"{BASE}/Patient/{pid}", headers={"Origin": APP_ORIGIN})
        assert mine.status_code == 200 and mine.headers["access-control-allow-origin"] == APP_ORIGIN
        other = await http.get(f"{BASE}/Patient/{pid}", headers={"Origin": STRANGER})
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


async def test_launch_contexts_only_from_the_clients_origin(
        app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """``POST /auth/launch`` takes a clinician's bearer token: like ``/fhir``, only from the
    origins of the token's own client."""
    app, http = app_http
    ehr_client = await register(app, redirect=APP_REDIRECT)
    await register(app, redirect=f"{OTHER_ORIGIN}/cb")
    await user(app, "doc", "clinician", fhir_user="Practitioner/p1")
    pid = await create(app, http, {"resourceType": "Patient", "name": [{"family": "Launch"}]})
    token = await service(app).issue_access_token(
        Grant(client_id=ehr_client, scope="user/*.rs", username="doc", role="clinician"))
    body = {"patient": f"Patient/{pid}"}
    for origin in (OTHER_ORIGIN, STRANGER):
        refused = await http.post(f"{ORIGIN}/auth/launch", json=body, headers={
            "Authorization": f"Bearer {token}", "Origin": origin})
        assert refused.status_code == 403, refused.text
        assert "launch" not in refused.json()
    made = await http.post(f"{ORIGIN}/auth/launch", json=body, headers={
        "Authorization": f"Bearer {token}", "Origin": APP_ORIGIN})
    assert made.status_code == 201, made.text
    assert made.json()["launch"]
    assert made.headers["access-control-allow-origin"] == APP_ORIGIN
