"""Client authentication at the token, introspection and revocation endpoints.

``client_secret_basic``, ``client_secret_post``, ``none`` (public apps: only the
``client_id``) and ``private_key_jwt`` (RFC 7523 section 2.2, as SMART Backend
Services profiles it: RS384 or ES384, ``iss`` = ``sub`` = client id, ``aud`` =
the token URL, ``exp`` at most five minutes ahead, ``jti`` used once). A
client's keys come from its registered JWKS or from its JWKS URL, fetched with
httpx and cached for ``FHIR_AUTH_JWKS_CACHE_SECONDS``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from starlette.datastructures import Headers
from starlette.requests import Request

from fhir_server.auth.clients import Client, check_jwks, get_client
from fhir_server.auth.origins import origin_refusal
from fhir_server.auth.passwords import secret_matches, token_hash
from fhir_server.core.peer_guard import PeerAddressRefused, PeerGuard, guarded_client
from fhir_server.storage.auth_store import AuthStore, now_s

log = logging.getLogger("fhir_server.auth")

ASSERTION_TYPE = JWTBearerClientAssertion.CLIENT_ASSERTION_TYPE
ASSERTION_ALGS = ("RS384", "ES384")
ASSERTION_MAX_LIFETIME = 300  # seconds: SMART Backend Services' five minutes
REFETCH_INTERVAL = 10.0       # least seconds between fetches of one JWKS URL on a kid miss
JWKS_FETCH_TIMEOUT = 5.0
JWKS_MAX_BYTES = 256 * 1024  # a JWK Set of a few keys is a few KB


@dataclass(frozen=True)
class AuthenticatedClient:
    client: Client
    method: str  # client_secret_basic | client_secret_post | private_key_jwt | none


def _invalid_client(description: str, *, basic: bool = False) -> InvalidClientError:
    return InvalidClientError(description=description, status_code=401 if basic else 400)


class JwksCache:
    """JWK Sets fetched from clients' JWKS URLs, cached with a TTL.

    A JWKS URL is data (registered for a client), so it is fetched as every address taken
    from data is: through the peer guard (no loopback, private or metadata address unless
    ``FHIR_PEER_ALLOWED_HOSTS`` allows it, checked where the socket opens), no redirect
    followed, and at most ``JWKS_MAX_BYTES`` read."""

    def __init__(self, *, ttl: float, guard: PeerGuard) -> None:
        self.ttl = ttl
        self.guard = guard
        self._sets: dict[str, tuple[float, dict[str, Any]]] = {}

    async def get(self, url: str, *, refresh: bool = False) -> dict[str, Any]:
        cached = self._sets.get(url)
        age = time.monotonic() - cached[0] if cached else None
        if cached and age is not None and (age < self.ttl and not (refresh and age > REFETCH_INTERVAL)):
            return cached[1]
        try:
            jwks = check_jwks(json.loads(await self._fetch(url)))
        except (httpx.HTTPError, PeerAddressRefused, ValueError) as exc:
            log.warning("fetching a client JWKS failed error=%s", type(exc).__name__)
            if cached:  # a stale set beats none while the client's server is down
                return cached[1]
            raise _invalid_client("the client's JWKS URL could not be fetched") from exc
        self._sets[url] = (time.monotonic(), jwks)
        return jwks

    async def _fetch(self, url: str) -> bytes:
        timeout = httpx.Timeout(JWKS_FETCH_TIMEOUT)
        async with (guarded_client(self.guard, timeout=timeout) as http,
                    http.stream("GET", url, headers={"Accept": "application/json"}) as response):
            response.raise_for_status()
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise ValueError(f"a JWK Set over {JWKS_MAX_BYTES} bytes")
            return body


class ClientAuthenticator:
    """Authenticates the caller of a token-endpoint-style request."""

    def __init__(self, *, store: AuthStore, token_url: str, jwks_cache: JwksCache) -> None:
        self.store = store
        self.token_url = token_url
        self.jwks_cache = jwks_cache

    async def authenticate(self, *, headers: Headers, form: dict[str, str],
                           allow_public: bool = True) -> AuthenticatedClient:
        basic_id, basic_secret = _basic(headers)
        methods = [m for m, present in (
            ("client_secret_basic", basic_id is not None),
            ("client_secret_post", "client_secret" in form),
            ("private_key_jwt", "client_assertion" in form or "client_assertion_type" in form),
        ) if present]
        if len(methods) > 1:
            raise InvalidRequestError(description="use exactly one client authentication method")
        method = methods[0] if methods else "none"
        if method == "private_key_jwt":
            return AuthenticatedClient(await self._assertion(form), method)
        client_id = basic_id if method == "client_secret_basic" else form.get("client_id")
        if not client_id:
            raise _invalid_client("client authentication is missing")
        if form.get("client_id") not in (None, client_id):
            raise InvalidRequestError(description="client_id does not match the authenticated client")
        client = await get_client(store=self.store, client_id=client_id)
        basic = method == "client_secret_basic"
        if client is None:
            raise _invalid_client("unknown client", basic=basic)
        if method == "none":
            if not client.public or not allow_public:
                raise _invalid_client("this client must authenticate")
            return AuthenticatedClient(client, method)
        secret = basic_secret if basic else form.get("client_secret")
        if client.secret_hash is None or not secret or not secret_matches(client.secret_hash, secret):
            raise _invalid_client("client authentication failed", basic=basic)
        return AuthenticatedClient(client, method)

    async def _assertion(self, form: dict[str, str]) -> Client:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise _invalid_client(f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion", "")
        try:
            header = jws.extract_compact(assertion.encode("ascii")).headers()
            unverified = json.loads(jws.extract_compact(assertion.encode("ascii")).payload)
        except (JoseError, ValueError, UnicodeError) as exc:
            raise _invalid_client("client_assertion is not a well-formed JWT") from exc
        alg = header.get("alg")
        if alg not in ASSERTION_ALGS:
            raise _invalid_client(f"the assertion must be signed with {' or '.join(ASSERTION_ALGS)}")
        issuer = unverified.get("iss") if isinstance(unverified, dict) else None
        if not isinstance(issuer, str) or not issuer:
            raise _invalid_client("the assertion has no iss")
        if form.get("client_id") not in (None, issuer):
            raise _invalid_client("client_id does not match the assertion's iss")
        client = await get_client(store=self.store, client_id=issuer)
        if client is None or not client.asymmetric:
            raise _invalid_client("unknown client, or a client without registered keys")
        claims = await self._verify_signature(client, assertion, alg, header.get("kid"))
        await self._check_claims(client, claims)
        return client

    async def _verify_signature(self, client: Client, assertion: str, alg: str,
                                kid: Any) -> dict[str, Any]:
        for attempt in (0, 1):
            if client.jwks is not None:
                jwks = client.jwks
            else:
                assert client.jwks_url is not None
                jwks = await self.jwks_cache.get(client.jwks_url, refresh=attempt == 1)
            candidates = _candidates(jwks, alg, kid)
            for key in candidates:
                try:
                    return jwt.decode(assertion, key, algorithms=[alg]).claims
                except JoseError:
                    continue
            if client.jwks is not None:
                break  # a registered JWKS cannot change; a URL's may have (rotation)
        raise _invalid_client("the assertion's signature does not verify with the client's keys")

    async def _check_claims(self, client: Client, claims: dict[str, Any]) -> None:
        now = now_s()
        cid = client.client_id
        if claims.get("iss") != cid or claims.get("sub") != cid:
            raise _invalid_client("the assertion's iss and sub must both be the client id")
        aud = claims.get("aud")
        if not (aud == self.token_url or (isinstance(aud, list) and self.token_url in aud)):
            raise _invalid_client(f"the assertion's aud must be the token URL {self.token_url}")
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise _invalid_client("the assertion needs a numeric exp")
        if exp <= now:
            raise _invalid_client("the assertion has expired")
        if exp > now + ASSERTION_MAX_LIFETIME:
            raise _invalid_client("the assertion's exp is more than five minutes ahead")
        for name in ("nbf", "iat"):
            value = claims.get(name)
            if value is not None and (not isinstance(value, int | float) or value > now + 60):
                raise _invalid_client(f"the assertion's {name} is in the future")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise _invalid_client("the assertion needs a jti (at most 256 characters)")
        key = token_hash(f"{cid}\n{jti}")
        if not await self.store.insert(kind="jti", doc={"_id": key, "exp": exp}):
            raise _invalid_client("the assertion's jti has been used already")


def _basic(headers: Headers) -> tuple[str | None, str | None]:
    if not headers.get("authorization", "").lower().startswith("basic "):
        return None, None
    try:
        found: tuple[str | None, str | None] = extract_basic_authorization(headers)
    except (UnicodeError, ValueError):
        raise InvalidClientError(description="the Basic credentials are malformed",
                                 status_code=401) from None
    if found[0] is None:
        raise InvalidClientError(description="the Basic credentials are malformed", status_code=401)
    return found


def _candidates(jwks: dict[str, Any], alg: str, kid: Any) -> list[RSAKey | ECKey]:
    kty, crv = ("RSA", None) if alg.startswith("RS") else ("EC", "P-384")
    out: list[RSAKey | ECKey] = []
    for key in KeySet.import_key_set(jwks).keys:  # type: ignore[arg-type]
        if not isinstance(key, RSAKey | ECKey) or key.key_type != kty:
            continue
        if crv is not None and key.as_dict().get("crv") != crv:
            continue
        if kid is not None and key.kid != kid:
            continue
        out.append(key)
    return out


def safe_text(text: str) -> str:
    """Text fit for an RFC 6749 error_description (printable ASCII without quote or backslash)."""
    return "".join(c if (" " <= c <= "~" and c not in "\"\\") else "?" for c in text)


def authenticator(app_state: Any) -> ClientAuthenticator:
    """The app's client authenticator (made on first use, with its JWKS cache)."""
    found: ClientAuthenticator | None = getattr(app_state, "client_auth", None)
    if found is None:
        auth = app_state.auth
        jwks = JwksCache(ttl=auth.settings.fhir_auth_jwks_cache_seconds,
                         guard=PeerGuard.from_setting(auth.settings.fhir_peer_allowed_hosts))
        found = ClientAuthenticator(store=auth.store, token_url=auth.token_url, jwks_cache=jwks)
        app_state.client_auth = found
    return found


async def authenticate_request(request: Request, form: dict[str, str], *,
                               allow_public: bool = True) -> AuthenticatedClient:
    """The client that authenticates this request, refused (``unauthorized_client``) when
    a browser sends it from a web origin that is not one of the client's."""
    caller = await authenticator(request.app.state).authenticate(
        headers=request.headers, form=form, allow_public=allow_public)
    await require_origin(request, caller.client.client_id)
    return caller


async def require_origin(request: Request, client_id: str) -> None:
    if refusal := await origin_refusal(request, client_id):
        raise UnauthorizedClientError(description=safe_text(refusal))


def oauth_error_body(error: OAuth2Error) -> tuple[int, dict[str, str], dict[str, str]]:
    """Status, JSON body and headers of an RFC 6749 error answer."""
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
    return int(error.status_code or 400), dict(error.get_body()), headers
