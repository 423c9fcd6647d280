"""``/auth/authorize``: the authorization request, login form and patient picker.

GET (or a POST of the same parameters, SMART's ``authorize-post``) validates
the request per RFC 6749 and SMART App Launch and shows the login form. The
form posts back with ``request_id``, naming the pending request kept server
side for ten minutes; after the password check the user may have to choose a
patient; then the browser is redirected to the app with a single-use code
bound to the client, the redirect URI and the PKCE challenge.

Errors: a missing or unknown client or redirect URI gets a 400 page (never a
redirect); anything else is redirected to the app as ``error=`` with ``state``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc7636.challenge import CODE_CHALLENGE_PATTERN
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from fhir_server.auth import pages
from fhir_server.auth.client_auth import safe_text
from fhir_server.auth.clients import Client, get_client
from fhir_server.auth.granting import within
from fhir_server.auth.passwords import token_hash
from fhir_server.auth.roles import bound_scopes
from fhir_server.auth.scopes import parse_scopes
from fhir_server.auth.tokens import AuthService, LoginEvent
from fhir_server.auth.users import FHIR_ID, PATIENT_ROLE, User, authenticate, get_user
from fhir_server.storage.auth_store import now_s

router = APIRouter()

PENDING_LIFETIME = 600  # seconds to sign in and choose a patient
MAX_PARAM_LENGTH = 4096


class PageError(Exception):
    """An error that must not be redirected (unknown client or redirect URI)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class AuthorizeRequest:
    client: Client
    redirect_uri: str
    state: str
    scope: list[str]  # requested, within the client's registration
    code_challenge: str
    nonce: str | None
    launch: dict[str, Any] | None


def _auth(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth
    return service


async def _validate(auth: AuthService, params: Mapping[str, str],
                    repeated: set[str]) -> AuthorizeRequest:
    client_id, redirect_uri = params.get("client_id"), params.get("redirect_uri")
    if not client_id or "client_id" in repeated:
        raise PageError("invalid_request", "client_id is missing")
    client = await get_client(store=auth.store, client_id=client_id)
    if client is None:
        raise PageError("invalid_request", "unknown client_id")
    if not redirect_uri or "redirect_uri" in repeated:
        raise PageError("invalid_request", "redirect_uri is missing")
    if redirect_uri not in client.redirect_uris:
        raise PageError("invalid_request", "redirect_uri is not registered for this client")
    state = params.get("state", "")

    def fail(error: type[OAuth2Error], description: str) -> OAuth2Error:
        return error(description=description, state=state or None, redirect_uri=redirect_uri)

    if repeated:
        raise fail(InvalidRequestError, safe_text(f"parameter {sorted(repeated)[0][:40]} is repeated"))
    if any(len(v) > MAX_PARAM_LENGTH for v in params.values()):
        raise fail(InvalidRequestError, "a parameter is too long")
    if params.get("response_type") != "code":
        raise UnsupportedResponseTypeError(safe_text(params.get("response_type", "")[:40]),
                                           description="response_type must be code",
                                           state=state or None, redirect_uri=redirect_uri)
    if not state:
        raise fail(InvalidRequestError, "state is required")
    challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
    if not challenge:
        raise fail(InvalidRequestError, "PKCE is required: code_challenge is missing")
    if method != "S256":
        raise fail(InvalidRequestError, "code_challenge_method must be S256")
    if not CODE_CHALLENGE_PATTERN.match(challenge):
        raise fail(InvalidRequestError, "code_challenge is not a base64url S256 challenge")
    if (params.get("aud") or "").rstrip("/") != auth.settings.base_url:
        raise fail(InvalidRequestError, f"aud must be this FHIR server: {auth.settings.base_url}")
    scope = within(params.get("scope", ""), client.scope)
    if not scope:
        raise fail(InvalidScopeError, "none of the requested scopes is allowed for this client")
    launch = None
    if params.get("launch"):
        launch = await auth.store.get(kind="launch", id_=params["launch"])
        if launch is None or launch.get("client_id") not in (None, client.client_id):
            raise fail(InvalidRequestError, "launch is unknown or has expired")
    return AuthorizeRequest(client=client, redirect_uri=redirect_uri, state=state, scope=scope,
                            code_challenge=challenge, nonce=params.get("nonce") or None,
                            launch=launch)


async def _save_pending(auth: AuthService, req: AuthorizeRequest) -> str:
    """Keep the request server side; returns the opaque id the login form carries."""
    request_id = secrets.token_urlsafe(24)
    launch = req.launch or {}
    await auth.store.insert(kind="requests", doc={
        "_id": token_hash(request_id), "exp": now_s() + PENDING_LIFETIME,
        "client_id": req.client.client_id, "client_name": req.client.name or req.client.client_id,
        "redirect_uri": req.redirect_uri, "state": req.state, "scope": req.scope,
        "code_challenge": req.code_challenge, "nonce": req.nonce,
        "launch_patient": launch.get("patient"), "launch_encounter": launch.get("encounter"),
    })
    return request_id


def _params(items: list[tuple[str, Any]]) -> tuple[dict[str, str], set[str]]:
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for key, value in items:
        if not isinstance(value, str):
            continue
        if key in params:
            repeated.add(key)
        params[key] = value
    return params, repeated


def _error_response(error: OAuth2Error | PageError) -> Response:
    if isinstance(error, PageError):
        return pages.error_page(error=error.error, description=error.description)
    assert error.redirect_uri is not None
    location = add_params_to_uri(error.redirect_uri, error.get_body())
    return RedirectResponse(location, status_code=302, headers={"Cache-Control": "no-store"})


@router.get("/authorize")
async def authorize_get(request: Request) -> Response:
    auth = _auth(request)
    try:
        req = await _validate(auth, *_params(list(request.query_params.multi_items())))
    except (PageError, OAuth2Error) as error:
        return _error_response(error)
    request_id = await _save_pending(auth, req)
    return pages.login_page(request_id=request_id, client_name=req.client.name or req.client.client_id)


@router.post("/authorize")
async def authorize_post(request: Request) -> Response:
    auth = _auth(request)
    form, form_repeated = _params(list((await request.form()).multi_items()))
    request_id = form.get("request_id")
    if request_id is None:
        # Credentials posted straight to the authorize URL that carries the request, or
        # SMART's authorize-post: the request's parameters in the body.
        source, repeated = (_params(list(request.query_params.multi_items())) if "username" in form
                            else (form, form_repeated))
        try:
            req = await _validate(auth, source, repeated)
        except (PageError, OAuth2Error) as error:
            return _error_response(error)
        request_id = await _save_pending(auth, req)
        if "username" not in form:
            return pages.login_page(request_id=request_id,
                                    client_name=req.client.name or req.client.client_id)
    pending = await auth.store.get(kind="requests", id_=token_hash(request_id))
    if pending is None:
        return pages.error_page(error="invalid_request",
                                description="this sign-in page has expired; start again from the app")
    if pending.get("username") is not None and "patient" in form:
        return await _picked(request, auth, request_id, pending, form["patient"])
    return await _login(request, auth, request_id, pending, form)


def _failure_counters(username: str, source: str | None) -> list[str]:
    """Failed sign-ins are counted per username (hashed: what was typed may be anything)
    and per network address, so that guessing is slowed for one account and from one place."""
    counters = [f"user:{token_hash(username.strip().lower())}"]
    if source:
        counters.append(f"addr:{source}")
    return counters


async def _attempt(auth: AuthService, counters: list[str]) -> bool:
    """Count this sign-in attempt before its password is checked, atomically, so that
    concurrent guesses cannot all pass the check; whether it is within the limits (a failed
    attempt stays counted, a successful one is taken back)."""
    limit = auth.settings.fhir_auth_login_max_failures
    window = auth.settings.fhir_auth_login_lockout_seconds
    allowed = True
    for counter, most in zip(counters, (limit, limit * 4), strict=False):
        if await auth.store.count(kind="failures", id_=counter, window=window) > most:
            allowed = False
    return allowed


async def _login(request: Request, auth: AuthService, request_id: str, pending: dict[str, Any],
                 form: dict[str, str]) -> Response:
    username, password = form.get("username", ""), form.get("password", "")
    source = request.client.host if request.client else None
    counters = _failure_counters(username, source)
    if not await _attempt(auth, counters):
        await auth.emit_login(LoginEvent(
            success=False, client_id=pending["client_id"], username=None, role=None,
            kind="password", reason="too many failed sign-ins", source=source))
        return pages.login_page(request_id=request_id, client_name=pending["client_name"],
                                error="Too many failed sign-ins. Try again later.", status=429)
    user = await authenticate(store=auth.store, username=username, password=password)
    if user is not None:  # the username's failures are forgiven, the address's attempt too
        await auth.store.delete(kind="failures", id_=counters[0])
        for counter in counters[1:]:
            await auth.store.uncount(kind="failures", id_=counter)
    # Only a registered user's name goes into the audit trail: what someone typed into
    # the username field of a failed login can be anything (a name, a birth date).
    known = user is not None or (
        bool(username) and await get_user(store=auth.store, username=username) is not None)
    await auth.emit_login(LoginEvent(
        success=user is not None, client_id=pending["client_id"],
        username=username[:64] if known else None, role=user.role if user else None,
        kind="password",
        reason=None if user else ("wrong password" if known else "unknown username"),
        source=source))
    if user is None:
        return pages.login_page(request_id=request_id, client_name=pending["client_name"],
                                error="Wrong username or password.", status=401)
    granted = bound_scopes(user.role, list(pending["scope"]))
    if user.fhir_user is None:
        granted = [s for s in granted if s != "fhirUser"]
    parsed = parse_scopes(" ".join(granted))
    patient = pending.get("launch_patient")
    if patient and user.role == PATIENT_ROLE and patient not in user.patients:
        return _deny(pending, "the launch patient is not one this user may act for")
    if not parsed.resource and not parsed.other:
        return _deny(pending, "this user's role allows none of the requested scopes")
    await auth.store.set_fields(kind="requests", id_=token_hash(request_id), fields={
        "username": user.username, "role": user.role, "fhir_user": user.fhir_user,
        "granted": granted, "candidates": list(user.patients), "auth_time": now_s()})
    needs_patient = parsed.launch_patient or any(s.context == "patient" for s in parsed.resource)
    if needs_patient and not patient:
        if len(user.patients) == 1:
            patient = user.patients[0]
        else:
            return pages.picker_page(request_id=request_id, patients=list(user.patients))
    return await _finish(auth, request_id, patient, user)


async def _picked(request: Request, auth: AuthService, request_id: str, pending: dict[str, Any],
                  choice: str) -> Response:
    candidates = list(pending.get("candidates") or [])
    choice = choice.removeprefix("Patient/")
    if candidates:
        ok = choice in candidates
    else:  # staff may choose any patient that exists
        ok = pending.get("role") != PATIENT_ROLE and bool(FHIR_ID.match(choice)) and \
            await request.app.state.repo.exists(type_="Patient", id_=choice)
    if not ok:
        return pages.picker_page(request_id=request_id, patients=candidates, status=400,
                                 error="Choose one of the patients offered (an existing Patient id).")
    user = User(username=pending["username"], role=pending["role"], patients=tuple(candidates),
                fhir_user=pending.get("fhir_user"))
    return await _finish(auth, request_id, choice, user)


def _deny(pending: dict[str, Any], description: str) -> Response:
    error = AccessDeniedError(description=description, state=pending["state"],
                              redirect_uri=pending["redirect_uri"])
    return _error_response(error)


async def _finish(auth: AuthService, request_id: str, patient: str | None, user: User) -> Response:
    pending = await auth.store.take(kind="requests", id_=token_hash(request_id))
    if pending is None:
        return pages.error_page(error="invalid_request",
                                description="this sign-in page has expired; start again from the app")
    granted: list[str] = pending["granted"]
    encounter = pending.get("launch_encounter")
    if not ({"launch", "launch/encounter"} & set(granted)):
        encounter = None
    code = secrets.token_urlsafe(32)
    await auth.store.insert(kind="codes", doc={
        "_id": token_hash(code), "exp": now_s() + auth.settings.fhir_auth_code_lifetime,
        "client_id": pending["client_id"], "redirect_uri": pending["redirect_uri"],
        "code_challenge": pending["code_challenge"], "scope": " ".join(granted),
        "username": user.username, "role": user.role, "fhir_user": user.fhir_user,
        "patient": patient, "encounter": encounter, "nonce": pending.get("nonce"),
        "auth_time": pending.get("auth_time") or now_s(),
    })
    location = add_params_to_uri(pending["redirect_uri"], [("code", code), ("state", pending["state"])])
    return RedirectResponse(location, status_code=302, headers={"Cache-Control": "no-store"})
