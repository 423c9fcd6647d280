"""Access and id tokens: signed JWTs, verified without a database round trip.

``AuthService`` lives on ``app.state.auth``. ``verify_access_token`` checks the
signature with a cached key, the issuer, audience and expiry, and the token's
``jti`` against revocations kept in memory: a revocation in this process takes
effect at once, one made by another process within
``FHIR_AUTH_REVOCATION_POLL_SECONDS`` (the set is reloaded with one query).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError

from fhir_server.auth.key_files import FileKeyRing, file_key_ring
from fhir_server.auth.keys import KeyRing
from fhir_server.core.config import Settings
from fhir_server.core.errors import Unauthorized
from fhir_server.storage.auth_store import AuthStore, now_s

log = logging.getLogger("fhir_server.auth")

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fhir"'}
ACCESS_TOKEN_TYPE = "at+jwt"
VERIFIED_TOKENS = 4096  # access tokens whose verified claims are kept (most recent)


@dataclass(frozen=True)
class Grant:
    """What an access token grants: who, through which app, which scopes, in which context."""

    client_id: str
    scope: str                     # space-separated granted scopes
    username: str | None = None
    role: str | None = None
    fhir_user: str | None = None   # "Practitioner/123", "Patient/abc"
    patient: str | None = None     # launch patient id (no "Patient/")
    encounter: str | None = None
    token_id: str | None = None    # jti


@dataclass(frozen=True)
class LoginEvent:
    """A user's login at the login form, or a client's authentication at the token endpoint."""

    success: bool
    client_id: str | None
    username: str | None = None
    role: str | None = None
    kind: str = "password"          # "password" (login form) or "client" (token endpoint)
    reason: str | None = None       # why it failed, for the audit trail
    source: str | None = None       # the caller's network address
    at: float = field(default_factory=time.time)


LoginHook = Callable[[LoginEvent], Awaitable[None]]


def _claims_to_grant(claims: dict[str, Any]) -> Grant:
    return Grant(client_id=str(claims["client_id"]), scope=str(claims.get("scope", "")),
                 username=claims.get("username"), role=claims.get("role"),
                 fhir_user=claims.get("fhirUser"), patient=claims.get("patient"),
                 encounter=claims.get("encounter"), token_id=claims.get("jti"))


class AuthService:
    """Issues and verifies this deployment's tokens (``app.state.auth``)."""

    def __init__(self, *, store: AuthStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.keys: KeyRing | FileKeyRing = file_key_ring(settings) or KeyRing(
            store=store, alg=settings.fhir_auth_signing_alg,
            token_lifetime=settings.fhir_auth_token_lifetime, kek=settings.key_encryption_key)
        self._revoked: dict[str, int] = {}
        self._revoked_loaded_at = 0.0
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._login_hooks: list[LoginHook] = []

    @property
    def issuer(self) -> str:
        return self.settings.base_url

    @property
    def token_url(self) -> str:
        return f"{self.settings.auth_base_url}/token"

    async def start(self) -> None:
        await self.keys.ensure()
        await self._reload_revoked()

    # -- access tokens ---------------------------------------------------------

    async def issue_access_token(self, grant: Grant, lifetime: int = 3600) -> str:
        """A signed JWT for ``grant``; ``lifetime`` at most FHIR_AUTH_TOKEN_LIFETIME."""
        if not 0 < lifetime <= self.settings.fhir_auth_token_lifetime:
            raise ValueError(f"token lifetime must be 1..{self.settings.fhir_auth_token_lifetime}s")
        key = await self.keys.signing_key()
        now = now_s()
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.settings.base_url,
            "sub": grant.username or grant.client_id, "client_id": grant.client_id,
            "scope": grant.scope, "iat": now, "exp": now + lifetime,
            "jti": grant.token_id or secrets.token_urlsafe(16),
        }
        optional = {"username": grant.username, "role": grant.role, "fhirUser": grant.fhir_user,
                    "patient": grant.patient, "encounter": grant.encounter}
        claims.update({k: v for k, v in optional.items() if v is not None})
        header = {"alg": key.alg, "kid": key.kid, "typ": ACCESS_TOKEN_TYPE}
        return jwt.encode(header, claims, key.key, algorithms=[key.alg], default_type=None)

    async def access_token_claims(self, token: str) -> dict[str, Any]:
        """The claims of a valid, unexpired, unrevoked access token of this server.

        A token's signature is checked once: its verified claims are kept (the
        ``VERIFIED_TOKENS`` most recent), and on each later use only its expiry and
        revocation are checked again."""
        claims = self._verified.get(token)
        if claims is None or int(claims.get("exp", 0)) <= now_s():
            claims = await self._verified_claims(token, typ=ACCESS_TOKEN_TYPE)
            if claims.get("aud") != self.settings.base_url or "client_id" not in claims:
                raise Unauthorized("The access token is not for this server",
                                   headers=BEARER_CHALLENGE)
            self._verified[token] = claims
            if len(self._verified) > VERIFIED_TOKENS:
                self._verified.popitem(last=False)
        await self._maybe_reload_revoked()
        if str(claims.get("jti")) in self._revoked:
            raise Unauthorized("The access token has been revoked", headers=BEARER_CHALLENGE)
        return claims

    async def verify_access_token(self, token: str) -> Grant:
        """The grant of a valid token; ``Unauthorized`` for a bad, expired or revoked one."""
        return _claims_to_grant(await self.access_token_claims(token))

    async def verify_access_token_until(self, token: str) -> tuple[Grant, int]:
        """``verify_access_token``, and the token's expiry (epoch seconds): for what outlives
        one request on it (a websocket's bindings)."""
        claims = await self.access_token_claims(token)
        return _claims_to_grant(claims), int(claims["exp"])

    async def revoke_access_token(self, *, jti: str, exp: int) -> None:
        self._revoked[jti] = exp
        await self.store.insert(kind="revoked", doc={"_id": jti, "exp": exp})

    # -- id tokens -------------------------------------------------------------

    async def issue_id_token(self, *, client_id: str, subject: str, fhir_user: str | None,
                             nonce: str | None, auth_time: int) -> str:
        key = await self.keys.signing_key()
        now = now_s()
        claims: dict[str, Any] = {"iss": self.issuer, "sub": subject, "aud": client_id, "iat": now,
                                  "exp": now + self.settings.fhir_auth_token_lifetime,
                                  "auth_time": auth_time}
        if fhir_user:
            claims["fhirUser"] = f"{self.settings.base_url}/{fhir_user}"
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode({"alg": key.alg, "kid": key.kid}, claims, key.key, algorithms=[key.alg])

    # -- login events (the audit trail subscribes) ------------------------------

    def on_login(self, hook: LoginHook) -> None:
        """Call ``hook`` (async) for every login and client authentication, failed or not."""
        self._login_hooks.append(hook)

    async def emit_login(self, event: LoginEvent) -> None:
        for hook in self._login_hooks:
            try:
                await hook(event)
            except Exception as exc:  # a broken subscriber must not break logins
                log.error("login hook failed error=%s", type(exc).__name__)

    # -- internals -------------------------------------------------------------

    async def _verified_claims(self, token: str, *, typ: str) -> dict[str, Any]:
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise Unauthorized("The access token is not a well-formed JWT",
                               headers=BEARER_CHALLENGE) from exc
        kid = header.get("kid")
        key = await self.keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None or header.get("typ") != typ:
            raise Unauthorized("The access token was not issued by this server",
                               headers=BEARER_CHALLENGE)
        try:
            claims = jwt.decode(token, key.key, algorithms=[key.alg]).claims
            jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.issuer},
                                  exp={"essential": True}).validate(claims)
        except JoseError as exc:
            raise Unauthorized("The access token is invalid or expired",
                               headers=BEARER_CHALLENGE) from exc
        return claims

    async def _maybe_reload_revoked(self) -> None:
        if time.monotonic() - self._revoked_loaded_at > self.settings.fhir_auth_revocation_poll_seconds:
            await self._reload_revoked()

    async def _reload_revoked(self) -> None:
        self._revoked_loaded_at = time.monotonic()  # first, so concurrent requests do not pile up
        docs = await self.store.all(kind="revoked")
        now = now_s()
        fresh = {str(d["_id"]): int(d["exp"]) for d in docs}
        # Keep this process's own recent revocations even if the read raced their insert.
        fresh.update({j: e for j, e in self._revoked.items() if e > now})
        self._revoked = fresh


async def create_auth(*, store: AuthStore, settings: Settings) -> AuthService:
    """The service for ``app.state.auth``: keys loaded (the first one generated if needed)."""
    if settings.fhir_auth == "off":
        log.warning("FHIR_AUTH=off: EVERY REQUEST IS ALLOWED WITHOUT A TOKEN. Use this only for "
                    "local experiments, never with real data.")
    service = AuthService(store=store, settings=settings)
    await service.start()
    return service
