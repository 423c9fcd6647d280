"""``POST /auth/token``: authorization_code (with PKCE), refresh_token, client_credentials.

Answers are RFC 6749 JSON (``{"error": ..., "error_description": ...}`` on
failure), which is what OAuth clients parse, with ``Cache-Control: no-store``.
Refresh tokens are opaque, stored as their SHA-256, and rotated: each use
returns a new one and consumes the old one, and a consumed one presented again revokes
its whole chain (``refresh_chains.py``); a refresh may narrow the scopes
but never widen them beyond the original grant, and the user's current role
bounds them again.
"""

from __future__ import annotations

import secrets
from typing import Any

from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN, compare_s256_code_challenge
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from fhir_server.auth import refresh_chains
from fhir_server.auth.client_auth import (
    AuthenticatedClient,
    authenticate_request,
    oauth_error_body,
    safe_text,
)
from fhir_server.auth.granting import REFRESH_SCOPES, granted, narrower
from fhir_server.auth.passwords import token_hash
from fhir_server.auth.roles import bound_scopes
from fhir_server.auth.scopes import parse_scopes
from fhir_server.auth.tokens import AuthService, Grant, LoginEvent
from fhir_server.auth.users import get_user
from fhir_server.storage.auth_store import now_s

router = APIRouter()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body; a repeated parameter is an error (RFC 6749 section 3.2)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise InvalidRequestError(description="the body must be application/x-www-form-urlencoded")
    form: dict[str, str] = {}
    for key, value in (await request.form()).multi_items():
        if key in form or not isinstance(value, str):
            raise InvalidRequestError(description=safe_text(f"parameter {key[:40]} is repeated or not text"))
        form[key] = value
    return form


def oauth_error_response(error: OAuth2Error) -> Response:
    status, body, headers = oauth_error_body(error)
    return JSONResponse(body, status_code=status, headers=headers)


@router.post("/token")
async def token(request: Request) -> Response:
    auth: AuthService = request.app.state.auth
    source = request.client.host if request.client else None
    try:
        form = await read_form(request)
        grant_type = form.get("grant_type")
        if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
            raise UnsupportedGrantTypeError(safe_text((grant_type or "")[:40]))
        try:
            caller = await authenticate_request(request, form)
        except OAuth2Error as error:
            if grant_type == "client_credentials":
                await auth.emit_login(LoginEvent(
                    success=False, client_id=form.get("client_id"), kind="client",
                    reason=error.description, source=source))
            raise
        if grant_type == "authorization_code":
            body = await _authorization_code(auth, caller, form)
        elif grant_type == "refresh_token":
            body = await _refresh(auth, caller, form)
        else:
            body = await _client_credentials(auth, caller, form)
            await auth.emit_login(LoginEvent(success=True, client_id=caller.client.client_id,
                                             kind="client", source=source))
    except OAuth2Error as error:
        return oauth_error_response(error)
    return JSONResponse(body, headers=NO_STORE)


async def _authorization_code(auth: AuthService, caller: AuthenticatedClient,
                              form: dict[str, str]) -> dict[str, Any]:
    code, verifier = form.get("code"), form.get("code_verifier")
    if not code:
        raise InvalidRequestError(description="code is missing")
    record = await auth.store.take(kind="codes", id_=token_hash(code))  # single use, whatever follows
    if record is None:
        raise InvalidGrantError(description="the code is invalid, expired or used already")
    if record["client_id"] != caller.client.client_id:
        raise InvalidGrantError(description="the code was issued to another client")
    if form.get("redirect_uri") != record["redirect_uri"]:
        raise InvalidGrantError(description="redirect_uri does not match the authorization request")
    if not verifier or not CODE_VERIFIER_PATTERN.match(verifier):
        raise InvalidGrantError(description="code_verifier is missing or malformed (PKCE)")
    if not compare_s256_code_challenge(verifier, record["code_challenge"]):
        raise InvalidGrantError(description="code_verifier does not match the code_challenge")
    return await _tokens(auth, record, scope=record["scope"], refresh_exp=None)


async def _refresh(auth: AuthService, caller: AuthenticatedClient,
                   form: dict[str, str]) -> dict[str, Any]:
    presented = form.get("refresh_token")
    if not presented:
        raise InvalidRequestError(description="refresh_token is missing")
    key = token_hash(presented)
    record = await refresh_chains.live(auth, key)
    if record is None:
        await refresh_chains.revoke_if_reused(auth, key)
    if record is None or record["client_id"] != caller.client.client_id:
        raise InvalidGrantError(description="the refresh token is invalid, expired or revoked")
    scope = record["scope"]
    if "scope" in form:
        if not narrower(form["scope"], original=record["scope"]):
            raise InvalidScopeError(description="a refresh may not ask for scopes beyond the original")
        scope = " ".join(dict.fromkeys(form["scope"].split()))
    if record.get("username"):
        user = await get_user(store=auth.store, username=record["username"])
        if user is None:
            raise InvalidGrantError(description="the user of this refresh token no longer exists")
        scope = " ".join(bound_scopes(user.role, scope.split()))
        record = {**record, "role": user.role, "fhir_user": user.fhir_user}
    if not await refresh_chains.use(auth, key, record):  # rotation: one use only
        raise InvalidGrantError(description="the refresh token is invalid, expired or revoked")
    online = "offline_access" not in record["scope"].split()
    return await _tokens(auth, record, scope=scope, refresh_exp=record["exp"] if online else None,
                         original_scope=record["scope"], id_token=False,
                         family=refresh_chains.family_of(key, record))


async def _client_credentials(auth: AuthService, caller: AuthenticatedClient,
                              form: dict[str, str]) -> dict[str, Any]:
    client = caller.client
    if caller.method != "private_key_jwt" or not client.asymmetric:
        raise UnauthorizedClientError(description="client_credentials needs a private_key_jwt "
                                      "client assertion (SMART Backend Services)")
    requested = form.get("scope", "")
    parsed = parse_scopes(requested)
    if not requested.strip() or parsed.other or any(s.context != "system" for s in parsed.resource):
        raise InvalidScopeError(description="a backend client asks for system/ scopes only")
    scope = granted(requested, allowed=client.scope, role=None)
    if not scope:
        raise InvalidScopeError(description="none of the requested scopes is allowed for this client")
    lifetime = min(300, auth.settings.fhir_auth_token_lifetime)  # SMART: at most five minutes
    access = await auth.issue_access_token(Grant(client_id=client.client_id, scope=" ".join(scope)),
                                           lifetime=lifetime)
    return {"access_token": access, "token_type": "Bearer", "expires_in": lifetime,
            "scope": " ".join(scope)}


async def _tokens(auth: AuthService, record: dict[str, Any], *, scope: str, refresh_exp: int | None,
                  original_scope: str | None = None, id_token: bool = True,
                  family: str | None = None) -> dict[str, Any]:
    """The token response of a user's grant (from a code or a refresh token, whose chain
    ``family`` the new refresh token continues)."""
    scopes = scope.split()
    lifetime = auth.settings.fhir_auth_token_lifetime
    grant = Grant(client_id=record["client_id"], scope=scope, username=record.get("username"),
                  role=record.get("role"), fhir_user=record.get("fhir_user"),
                  patient=record.get("patient"), encounter=record.get("encounter"),
                  token_id=secrets.token_urlsafe(16))
    body: dict[str, Any] = {"access_token": await auth.issue_access_token(grant, lifetime=lifetime),
                            "token_type": "Bearer", "expires_in": lifetime, "scope": scope}
    if grant.patient:
        body["patient"] = grant.patient
        body["need_patient_banner"] = True
    if grant.encounter:
        body["encounter"] = grant.encounter
    if id_token and "openid" in scopes and grant.username:
        body["id_token"] = await auth.issue_id_token(
            client_id=grant.client_id, subject=grant.username,
            fhir_user=grant.fhir_user if "fhirUser" in scopes else None,
            nonce=record.get("nonce"), auth_time=int(record.get("auth_time") or now_s()))
    kept = (original_scope or scope).split()
    if any(s in kept for s in REFRESH_SCOPES):
        offline = "offline_access" in kept
        refresh = secrets.token_urlsafe(32)
        exp = refresh_exp or now_s() + (auth.settings.fhir_auth_refresh_lifetime if offline
                                        else auth.settings.fhir_auth_online_refresh_lifetime)
        await auth.store.insert(kind="refresh", doc={
            "_id": token_hash(refresh), "exp": exp, "client_id": grant.client_id,
            "scope": original_scope or scope, "username": grant.username, "role": grant.role,
            "fhir_user": grant.fhir_user, "patient": grant.patient, "encounter": grant.encounter,
            "family": family or refresh_chains.new_family()})
        body["refresh_token"] = refresh
    return body
