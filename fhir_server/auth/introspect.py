"""``/auth/introspect`` (RFC 7662), ``/auth/revoke`` (RFC 7009) and ``/auth/launch``.

Introspection callers authenticate as a registered confidential or backend
client, or with a bearer token of an ``admin`` user. Revocation: a client
revokes its own tokens (public clients identify with ``client_id``); an admin
bearer token may revoke any. A revoked access token fails verification in this
process at once, in other processes within the revocation poll interval.

``POST /auth/launch`` creates an EHR launch context (``patient``, optional
``encounter``, optional ``client_id``) for a bearer token of an ``admin`` or
``clinician`` user, and answers its opaque id for the app's ``launch`` parameter.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuth2Error
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from fhir_server.auth import refresh_chains
from fhir_server.auth.client_auth import authenticate_request, require_origin
from fhir_server.auth.launch import create_launch
from fhir_server.auth.origins import origin_refusal
from fhir_server.auth.passwords import token_hash
from fhir_server.auth.token_endpoint import NO_STORE, oauth_error_response, read_form
from fhir_server.auth.tokens import AuthService, Grant
from fhir_server.core.errors import Forbidden, Invalid, Unauthorized

router = APIRouter()
ADMIN_ROLE = "admin"
LAUNCH_ROLES = ("admin", "clinician")


async def bearer_grant(request: Request) -> Grant | None:
    """The grant of the request's bearer token; None without one; 401 for a bad one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    auth: AuthService = request.app.state.auth
    return await auth.verify_access_token(token.strip())


async def _caller(request: Request, form: dict[str, str]) -> tuple[str | None, bool]:
    """(client id, is admin) of the caller; raises for an unauthenticated one."""
    try:
        grant = await bearer_grant(request)
    except Unauthorized as exc:
        raise InvalidClientError(description="the bearer token is invalid", status_code=401) from exc
    if grant is not None:
        if grant.role != ADMIN_ROLE:
            raise InvalidClientError(description="a bearer token must belong to an admin user",
                                     status_code=401)
        await require_origin(request, grant.client_id)
        return None, True
    caller = await authenticate_request(request, form)
    return caller.client.client_id, False


@router.post("/introspect")
async def introspect(request: Request) -> Response:
    auth: AuthService = request.app.state.auth
    try:
        form = await read_form(request)
        client_id, admin = await _caller(request, form)
        if client_id is not None and not admin:
            client = await auth.store.get(kind="clients", id_=client_id)
            if client is None or not (client.get("secret_hash") or client.get("jwks")
                                      or client.get("jwks_url")):
                raise InvalidClientError(description="introspection needs a confidential or "
                                         "backend client, or an admin bearer token", status_code=401)
        token = form.get("token")
        if not token:
            raise InvalidRequestError(description="token is missing")
    except OAuth2Error as error:
        return oauth_error_response(error)
    return JSONResponse(await _describe(auth, token, form.get("token_type_hint")), headers=NO_STORE)


async def _describe(auth: AuthService, token: str, hint: str | None) -> dict[str, Any]:
    if hint != "refresh_token":
        try:
            claims = await auth.access_token_claims(token)
        except Unauthorized:
            claims = None
        if claims is not None:
            out = {"active": True, "token_type": "Bearer"}
            for name in ("scope", "client_id", "sub", "username", "exp", "iat", "iss", "aud", "jti",
                         "patient", "encounter", "fhirUser", "role"):
                if name in claims:
                    out[name] = claims[name]
            return out
    record = await refresh_chains.live(auth, token_hash(token))
    if record is None:
        return {"active": False}
    out = {"active": True, "token_type": "refresh_token", "scope": record["scope"],
           "client_id": record["client_id"], "exp": record["exp"],
           "sub": record.get("username") or record["client_id"]}
    for name, key in (("username", "username"), ("patient", "patient"), ("encounter", "encounter"),
                      ("fhirUser", "fhir_user")):
        if record.get(key):
            out[name] = record[key]
    return out


@router.post("/revoke")
async def revoke(request: Request) -> Response:
    auth: AuthService = request.app.state.auth
    try:
        form = await read_form(request)
        client_id, admin = await _caller(request, form)
        token = form.get("token")
        if not token:
            raise InvalidRequestError(description="token is missing")
        await _revoke(auth, token, client_id=client_id, admin=admin)
    except OAuth2Error as error:
        return oauth_error_response(error)
    return Response(status_code=200, headers=NO_STORE)


async def _revoke(auth: AuthService, token: str, *, client_id: str | None, admin: bool) -> None:
    """Revoke an access or refresh token; an unknown token is answered 200 (RFC 7009 2.2)."""
    try:
        claims = await auth.access_token_claims(token)
    except Unauthorized:
        claims = None
    if claims is not None:
        if not admin and claims.get("client_id") != client_id:
            raise InvalidClientError(description="the token was issued to another client")
        await auth.revoke_access_token(jti=str(claims["jti"]), exp=int(claims["exp"]))
        return
    key = token_hash(token)
    record = await auth.store.get(kind="refresh", id_=key)
    if record is None:
        return
    if not admin and record["client_id"] != client_id:
        raise InvalidClientError(description="the token was issued to another client")
    await auth.store.delete(kind="refresh", id_=key)


@router.post("/launch")
async def launch(request: Request) -> Response:
    """Create an EHR launch context; the answer's ``launch`` goes into the app's launch URL."""
    auth: AuthService = request.app.state.auth
    grant = await bearer_grant(request)
    if grant is None:
        raise Unauthorized("A bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    if refusal := await origin_refusal(request, grant.client_id):
        raise Forbidden(refusal)  # a page may use only its own client's tokens, as on /fhir
    if grant.role not in LAUNCH_ROLES:
        raise Forbidden("Only admin and clinician users may create launch contexts")
    try:
        body = await request.json()
    except ValueError:
        raise Invalid("The body must be a JSON object") from None
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str | None)
                                             for k in ("patient", "encounter", "client_id")):
        raise Invalid("The body must be a JSON object with string patient, encounter, client_id")
    try:
        launch_id = await create_launch(store=auth.store, repo=request.app.state.repo,
                                        patient=body.get("patient"), encounter=body.get("encounter"),
                                        client_id=body.get("client_id"), created_by=grant.username)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return JSONResponse({"launch": launch_id}, status_code=201, headers=NO_STORE)

