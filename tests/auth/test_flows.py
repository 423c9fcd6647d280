"""The authorization code flow with PKCE, over HTTP against the app: login form, code, token,
use, refresh, revoke, and every way it must refuse."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.auth.flow_helpers import (
    AUTHORIZE,
    BASE,
    ORIGIN,
    REDIRECT,
    TOKEN,
    AuthorizeParams,
    app_client,
    code_from,
    create,
    exchange,
    login,
    parse_form,
    pkce,
    query_of,
    running_app,
    user,
)
from tests.support.store import Store

APP_SCOPES = ("openid fhirUser launch launch/patient launch/encounter offline_access online_access "
              "patient/*.cruds user/*.cruds")


@pytest.fixture
async def app_http(store: Store) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(store) as pair:
        yield pair


async def introspect(http: httpx.AsyncClient, token: str, auth: tuple[str, str]) -> dict[str, object]:
    response = await http.post(f"{ORIGIN}/auth/introspect", data={"token": token}, auth=auth)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_full_flow_patient_user(app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    mine = await create(app, http, {"resourceType": "Patient", "name": [{"family": "Mine"}]})
    client_id, _ = await app_client(app, scope=APP_SCOPES)
    resource_server, rs_secret = await app_client(app, scope="openid", confidential=True)
    assert rs_secret is not None
    await user(app, "pat", "patient", patients=(mine,))
    verifier, challenge = pkce()
    params = AuthorizeParams(client_id=client_id, challenge=challenge, nonce="n-123",
                             scope="openid fhirUser launch/patient offline_access patient/*.rs")
    code = code_from(await login(http, params, username="pat"), params)
    response = await exchange(http, code=code, verifier=verifier, client_id=client_id)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["patient"] == mine
    assert body["expires_in"] == 3600
    granted = body["scope"].split()
    assert "patient/*.rs" in granted and "launch/patient" in granted
    assert {"user/*.cruds", "patient/*.cruds"}.isdisjoint(granted)

    # The id token verifies against the published JWKS with a real JWT library.
    jwks = (await http.get(f"{ORIGIN}/auth/jwks")).json()
    id_token = jwt.decode(body["id_token"], KeySet.import_key_set(jwks),
                          algorithms=["RS256", "ES256", "ES384"])
    assert id_token.claims["aud"] == client_id
    assert id_token.claims["nonce"] == "n-123"
    assert id_token.claims["fhirUser"] == f"{BASE}/Patient/{mine}"
    assert id_token.claims["sub"] == "pat"
    assert id_token.header["kid"] in {k["kid"] for k in jwks["keys"]}

    # The access token works on /fhir (and introspection says it is active).
    access = body["access_token"]
    read = await http.get(f"{BASE}/Patient/{mine}", headers={"Authorization": f"Bearer {access}"})
    assert read.status_code == 200 and read.json()["id"] == mine
    info = await introspect(http, access, (resource_server, rs_secret))
    assert info["active"] is True and info["patient"] == mine and info["client_id"] == client_id
    assert info["sub"] == "pat" and info["scope"] == body["scope"]

    # Refresh: a new access token and a new refresh token; the old refresh token is spent.
    refresh = await http.post(TOKEN, data={"grant_type": "refresh_token", "client_id": client_id,
                                           "refresh_token": body["refresh_token"]})
    assert refresh.status_code == 200, refresh.text
    renewed = refresh.json()
    assert renewed["access_token"] != access and renewed["refresh_token"] != body["refresh_token"]
    assert renewed["patient"] == mine and renewed["scope"] == body["scope"]
    # A refresh may narrow the scopes, never widen them.
    wider = await http.post(TOKEN, data={"grant_type": "refresh_token", "client_id": client_id,
                                         "refresh_token": renewed["refresh_token"],
                                         "scope": "patient/*.cruds"})
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrow = await http.post(TOKEN, data={"grant_type": "refresh_token", "client_id": client_id,
                                          "refresh_token": renewed["refresh_token"],
                                          "scope": "patient/Patient.r"})
    assert narrow.status_code == 200, narrow.text
    assert narrow.json()["scope"] == "patient/Patient.r"
    latest = narrow.json()["refresh_token"]
    assert (await introspect(http, latest, (resource_server, rs_secret)))["active"] is True
    # The spent first refresh token again: it leaked, so its whole chain is revoked, and
    # the latest token of the chain is refused too (OAuth 2.0 Security BCP).
    again = await http.post(TOKEN, data={"grant_type": "refresh_token", "client_id": client_id,
                                         "refresh_token": body["refresh_token"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert (await introspect(http, latest, (resource_server, rs_secret))) == {"active": False}
    chained = await http.post(TOKEN, data={"grant_type": "refresh_token", "client_id": client_id,
                                           "refresh_token": latest})
    assert chained.status_code == 400 and chained.json()["error"] == "invalid_grant"

    # Revocation: the access token is refused at once, the refresh token too.
    new_access = renewed["access_token"]
    revoked = await http.post(f"{ORIGIN}/auth/revoke", data={"token": new_access,
                                                             "client_id": client_id})
    assert revoked.status_code == 200
    assert (await introspect(http, new_access, (resource_server, rs_secret))) == {"active": False}
    denied = await http.get(f"{BASE}/Patient/{mine}", headers={"Authorization": f"Bearer {new_access}"})
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith("Bearer")
    refresh_token = narrow.json()["refresh_token"]
    assert (await http.post(f"{ORIGIN}/auth/revoke", data={"token": refresh_token,
                                                           "client_id": client_id})).status_code == 200
    spent = await http.post(TOKEN, data={"grant_type": "refresh_token", "client_id": client_id,
                                         "refresh_token": refresh_token})
    assert spent.json()["error"] == "invalid_grant"


async def test_patient_picker_and_confidential_client(
        app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    kids = [await create(app, http, {"resourceType": "Patient", "name": [{"family": f"K{i}"}]})
            for i in range(2)]
    client_id, secret = await app_client(app, scope=APP_SCOPES, confidential=True)
    assert secret is not None
    await user(app, "parent", "patient", patients=tuple(kids), fhir_user="RelatedPerson/rp1")
    verifier, challenge = pkce()
    params = AuthorizeParams(client_id=client_id, challenge=challenge,
                             scope="launch/patient patient/Observation.rs openid fhirUser")
    picker = await login(http, params, username="parent")
    assert picker.status_code == 200, picker.text
    form = parse_form(picker.text)
    offered = [i["value"] for i in form.inputs if i.get("name") == "patient"]
    assert sorted(offered) == sorted(kids)
    # A patient the user may not act for is refused; then one of theirs is accepted.
    wrong = await http.post(str(picker.url), data={**form.fields, "patient": "someone-else"})
    assert wrong.status_code == 400
    chosen = await http.post(str(picker.url), data={**form.fields, "patient": kids[1]})
    code = code_from(chosen, params)
    no_secret = await exchange(http, code=code, verifier=verifier, client_id=client_id)
    assert no_secret.status_code in (400, 401) and no_secret.json()["error"] == "invalid_client"
    # The failed attempt consumed nothing but the client check; a fresh code for the real exchange.
    params2 = AuthorizeParams(client_id=client_id, challenge=challenge, scope=params.scope)
    picker2 = await login(http, params2, username="parent")
    form2 = parse_form(picker2.text)
    code2 = code_from(await http.post(str(picker2.url), data={**form2.fields, "patient": kids[0]}),
                      params2)
    bad_secret = await exchange(http, code=code2, verifier=verifier, client_id=client_id,
                                secret="not-the-secret")
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    assert bad_secret.headers["www-authenticate"].startswith("Basic")
    params3 = AuthorizeParams(client_id=client_id, challenge=challenge, scope=params.scope)
    picker3 = await login(http, params3, username="parent")
    form3 = parse_form(picker3.text)
    code3 = code_from(await http.post(str(picker3.url), data={**form3.fields, "patient": kids[0]}),
                      params3)
    ok = await exchange(http, code=code3, verifier=verifier, client_id=client_id, secret=secret)
    assert ok.status_code == 200, ok.text
    assert ok.json()["patient"] == kids[0]
    # client_secret_post works as well, and fhirUser comes from the user's registration.
    params4 = AuthorizeParams(client_id=client_id, challenge=challenge, scope=params.scope)
    picker4 = await login(http, params4, username="parent")
    form4 = parse_form(picker4.text)
    code4 = code_from(await http.post(str(picker4.url), data={**form4.fields, "patient": kids[1]}),
                      params4)
    posted = await http.post(TOKEN, data={
        "grant_type": "authorization_code", "code": code4, "redirect_uri": REDIRECT,
        "code_verifier": verifier, "client_id": client_id, "client_secret": secret})
    assert posted.status_code == 200, posted.text
    claims = jwt.decode(posted.json()["id_token"],
                        KeySet.import_key_set((await http.get(f"{ORIGIN}/auth/jwks")).json())).claims
    assert claims["fhirUser"] == f"{BASE}/RelatedPerson/rp1"
    assert "nonce" not in claims


async def test_code_exchange_refusals(app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    client_id, _ = await app_client(app, scope=APP_SCOPES)
    await user(app, "doc", "clinician", fhir_user="Practitioner/p1")

    async def fresh_code() -> tuple[str, str]:
        verifier, challenge = pkce()
        params = AuthorizeParams(client_id=client_id, challenge=challenge, scope="user/*.rs openid")
        return code_from(await login(http, params, username="doc"), params), verifier

    code, verifier = await fresh_code()
    wrong = await exchange(http, code=code, verifier=pkce()[0], client_id=client_id)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # The code was spent by the failed attempt: the right verifier cannot use it any more.
    reused = await exchange(http, code=code, verifier=verifier, client_id=client_id)
    assert reused.json()["error"] == "invalid_grant"

    code, verifier = await fresh_code()
    first = await exchange(http, code=code, verifier=verifier, client_id=client_id)
    assert first.status_code == 200, first.text
    second = await exchange(http, code=code, verifier=verifier, client_id=client_id)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"

    code, verifier = await fresh_code()
    other_uri = await exchange(http, code=code, verifier=verifier, client_id=client_id,
                               redirect_uri="https://app.example.org/other")
    assert other_uri.json()["error"] == "invalid_grant"

    code, _ = await fresh_code()
    missing = await http.post(TOKEN, data={"grant_type": "authorization_code", "code": code,
                                           "redirect_uri": REDIRECT, "client_id": client_id})
    assert missing.json()["error"] == "invalid_grant"

    code, verifier = await fresh_code()
    other_client, _ = await app_client(app, scope=APP_SCOPES)
    stolen = await exchange(http, code=code, verifier=verifier, client_id=other_client)
    assert stolen.json()["error"] == "invalid_grant"

    unknown = await http.post(TOKEN, data={"grant_type": "password", "client_id": client_id})
    assert unknown.json()["error"] == "unsupported_grant_type"
    repeated = await http.post(TOKEN, content=f"grant_type=authorization_code&code=a&code=b"
                               f"&client_id={client_id}",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"


async def test_wrong_password_and_authorize_refusals(
        app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    client_id, _ = await app_client(app, scope=APP_SCOPES)
    await user(app, "doc", "clinician")
    events = []

    async def hook(event: object) -> None:
        events.append(event)

    app.state.auth.on_login(hook)
    _, challenge = pkce()
    params = AuthorizeParams(client_id=client_id, challenge=challenge, scope="user/*.rs")
    failed = await login(http, params, username="doc", password="wrong password")
    assert failed.status_code == 401
    assert "location" not in failed.headers
    assert {"username", "password"} <= {i.get("name") for i in parse_form(failed.text).inputs}
    unknown = await login(http, params, username="nobody")
    assert unknown.status_code == 401
    # What was typed for an unknown user is not recorded (it could be a name or a birth date).
    assert [(e.success, e.username, e.reason) for e in events] == [
        (False, "doc", "wrong password"), (False, None, "unknown username")]
    code_from(await login(http, params, username="doc"), params)
    assert (events[-1].success, events[-1].role, events[-1].client_id) == (True, "clinician", client_id)

    def redirected_error(response: httpx.Response, error: str, state: str) -> None:
        assert response.status_code == 302, response.text
        query = query_of(response.headers["location"])
        assert response.headers["location"].startswith(REDIRECT)
        assert query["error"] == error and query["state"] == state

    base = params.query()
    for change, error in (
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"aud": "https://elsewhere.example.org/fhir"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "system/*.rs"}, "invalid_scope"),
        ({"launch": "no-such-launch"}, "invalid_request"),
    ):
        query = {k: v for k, v in {**base, **change}.items() if v is not None}
        redirected_error(await http.get(AUTHORIZE, params=query), error, params.state)

    # Not redirected: unknown client, unregistered or missing redirect_uri.
    for change in ({"client_id": "nope"}, {"redirect_uri": "https://evil.example.org/cb"},
                   {"redirect_uri": None}):
        query = {k: v for k, v in {**base, **change}.items() if v is not None}
        page = await http.get(AUTHORIZE, params=query)
        assert page.status_code == 400 and "location" not in page.headers
        assert "invalid_request" in page.text
    expired = await http.post(AUTHORIZE, data={"request_id": "made-up", "username": "doc",
                                               "password": "x" * 10})
    assert expired.status_code == 400


@pytest.mark.process
async def test_ehr_launch(app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    patient = await create(app, http, {"resourceType": "Patient", "name": [{"family": "Launch"}]})
    encounter = await create(app, http, {"resourceType": "Encounter", "status": "in-progress",
                                         "class": {"code": "AMB"},
                                         "subject": {"reference": f"Patient/{patient}"}})
    client_id, _ = await app_client(app, scope=APP_SCOPES)
    await user(app, "doc", "clinician", fhir_user="Practitioner/p1")
    await user(app, "clerk", "front-desk")
    # The EHR (a clinician's session) creates the launch context.
    verifier, challenge = pkce()
    params = AuthorizeParams(client_id=client_id, challenge=challenge, scope="user/*.rs")
    code = code_from(await login(http, params, username="doc"), params)
    ehr = (await exchange(http, code=code, verifier=verifier, client_id=client_id)).json()
    headers = {"Authorization": f"Bearer {ehr['access_token']}"}
    made = await http.post(f"{ORIGIN}/auth/launch", headers=headers,
                           json={"patient": f"Patient/{patient}", "encounter": encounter})
    assert made.status_code == 201, made.text
    launch = made.json()["launch"]
    missing = await http.post(f"{ORIGIN}/auth/launch", headers=headers, json={"patient": "ghost"})
    assert missing.status_code == 400
    assert (await http.post(f"{ORIGIN}/auth/launch", json={"patient": patient})).status_code == 401

    verifier, challenge = pkce()
    params = AuthorizeParams(client_id=client_id, challenge=challenge, launch=launch,
                             scope="launch openid fhirUser patient/*.rs user/Encounter.rs")
    code = code_from(await login(http, params, username="doc"), params)
    body = (await exchange(http, code=code, verifier=verifier, client_id=client_id)).json()
    assert body["patient"] == patient and body["encounter"] == encounter
    assert "launch" in body["scope"].split()

    # A front-desk user's token cannot create launch contexts.
    verifier, challenge = pkce()
    params = AuthorizeParams(client_id=client_id, challenge=challenge, scope="user/Patient.rs")
    code = code_from(await login(http, params, username="clerk"), params)
    clerk = (await exchange(http, code=code, verifier=verifier, client_id=client_id)).json()
    forbidden = await http.post(f"{ORIGIN}/auth/launch", json={"patient": patient},
                                headers={"Authorization": f"Bearer {clerk['access_token']}"})
    assert forbidden.status_code == 403


async def test_role_bounds_granted_scopes(app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    from fhir_server.auth.roles import bound_scopes

    app, http = app_http
    client_id, _ = await app_client(app, scope=APP_SCOPES)
    await user(app, "biller", "billing")
    verifier, challenge = pkce()
    params = AuthorizeParams(client_id=client_id, challenge=challenge, scope="user/*.cruds")
    code = code_from(await login(http, params, username="biller"), params)
    body = (await exchange(http, code=code, verifier=verifier, client_id=client_id)).json()
    expected = bound_scopes("billing", ["user/*.cruds"])
    assert body["scope"].split() == expected
    assert "user/*.cruds" not in expected


async def test_malformed_requests_are_4xx(app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    client_id, _ = await app_client(app, scope=APP_SCOPES)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = [
        ("POST", TOKEN, {"json": {"grant_type": "client_credentials"}}),
        ("POST", TOKEN, {"content": b"grant_type=authorization_code&code=%FF%FE", "headers": form}),
        ("POST", TOKEN, {"data": {"grant_type": "client_credentials"},
                         "headers": {"Authorization": "Basic %%%"}}),
        ("POST", TOKEN, {"data": {"grant_type": "client_credentials"},
                         "headers": {"Authorization": "Basic " + "//79/A=="}}),
        ("POST", TOKEN, {"data": {"grant_type": "client_credentials", "client_assertion": "é.x.y",
                                  "client_assertion_type": "urn:ietf:params:oauth:client-assertion"
                                                           "-type:jwt-bearer"}}),
        ("POST", TOKEN, {"data": {"grant_type": "client_credentials", "client_assertion": "a.b.c",
                                  "client_assertion_type": "urn:ietf:params:oauth:client-assertion"
                                                           "-type:jwt-bearer"}}),
        ("POST", TOKEN, {"data": {"grant_type": 'x"\\', "client_id": client_id}}),
        ("POST", f"{ORIGIN}/auth/introspect", {"data": {"token": "é"},
                                               "headers": {"Authorization": b"Bearer \xff"}}),
        ("POST", f"{ORIGIN}/auth/revoke", {"data": {"token": "x"}}),
        ("POST", f"{ORIGIN}/auth/launch", {"content": b"[1]",
                                           "headers": {"Authorization": "Bearer x"}}),
        ("GET", AUTHORIZE, {}),
        ("GET", AUTHORIZE, {"params": {"client_id": client_id, "redirect_uri": REDIRECT,
                                       "state": 'a"b\\c', "response_type": 'zz"\\'}}),
        ("POST", AUTHORIZE, {"json": {"username": "x"}}),
        ("POST", AUTHORIZE, {"files": {"request_id": ("f", b"x")}}),
        ("POST", AUTHORIZE, {"data": {"request_id": "x", "patient": "../../etc"}}),
    ]
    for method, url, kwargs in cases:
        response = await http.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert 300 <= response.status_code < 500, (url, kwargs, response.status_code, response.text)


async def test_online_access_refresh_does_not_slide(
        app_http: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = app_http
    client_id, _ = await app_client(app, scope=APP_SCOPES)
    rs_id, rs_secret = await app_client(app, scope="openid", confidential=True)
    assert rs_secret is not None
    await user(app, "doc", "clinician")
    verifier, challenge = pkce()
    params = AuthorizeParams(client_id=client_id, challenge=challenge,
                             scope="online_access user/Patient.rs")
    code = code_from(await login(http, params, username="doc"), params)
    body = (await exchange(http, code=code, verifier=verifier, client_id=client_id)).json()
    first = await http.post(f"{ORIGIN}/auth/introspect", auth=(rs_id, rs_secret),
                            data={"token": body["refresh_token"], "token_type_hint": "refresh_token"})
    info = first.json()
    assert info["active"] is True and info["token_type"] == "refresh_token"
    lifetime = app.state.settings.fhir_auth_online_refresh_lifetime
    assert 0 <= info["exp"] - time.time() <= lifetime
    renewed = (await http.post(TOKEN, data={"grant_type": "refresh_token", "client_id": client_id,
                                            "refresh_token": body["refresh_token"]})).json()
    second = (await http.post(f"{ORIGIN}/auth/introspect", auth=(rs_id, rs_secret),
                              data={"token": renewed["refresh_token"]})).json()
    assert second["active"] is True and second["exp"] == info["exp"]
    assert renewed["scope"] == "online_access user/Patient.rs"
