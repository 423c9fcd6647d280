"""OAuth2 client credentials with ``private_key_jwt`` (SMART Backend Services) toward payers.

An Endpoint that carries the ``endpoint-oauth2`` extension (``clientId``, optional
``scope``) is called with a bearer token. The token endpoint is discovered from the
payer's ``[address]/.well-known/smart-configuration``; the client assertion is a JWT
signed with this server's private key (``FHIR_CLIENT_KEY_FILE``: a private JWK,
RS384 or ES384), with ``iss`` = ``sub`` = the client id, ``aud`` = the token
endpoint, ``exp`` 4 minutes ahead and a fresh ``jti``. Tokens are cached per
endpoint until 30 seconds before they expire. The discovery and token calls go through
the peer client's guarded connections, so a token URL a payer publishes is checked like
its address; their failures are told as every peer failure is (``peer_errors.py``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from fhir_server.adapters.payer import PayerEndpoint
from fhir_server.adapters.peer_errors import unreachable
from fhir_server.adapters.peer_limits import AnswerTooLarge, send_bounded
from fhir_server.core.errors import Upstream, UpstreamTimeout
from fhir_server.core.peer_guard import PeerAddressRefused

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
DEFAULT_SCOPE = "system/CoverageEligibilityRequest.c system/Claim.c"
ASSERTION_LIFETIME = 240
EARLY_REFRESH = 30
# A token answer or a SMART configuration is a few KB; a peer's longer answer is cut off.
OAUTH_MAX_BYTES = 256 * 1024


def load_client_key(path: Path) -> RSAKey | ECKey:
    """The private JWK in ``path`` (it must name its ``kid`` and an ``alg`` of RS384/ES384)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"FHIR_CLIENT_KEY_FILE cannot be read as JSON: {type(exc).__name__}"
                         ) from None
    if data.get("alg") not in ALGORITHMS or not data.get("kid") or "d" not in data:
        raise ValueError("FHIR_CLIENT_KEY_FILE must be a private JWK with a kid and alg RS384 "
                         "or ES384")
    return (RSAKey if data.get("kty") == "RSA" else ECKey).import_key(data)


def generate_client_key(alg: str = "ES384") -> dict[str, Any]:
    """A new private JWK for client assertions (its public part goes to the payer)."""
    kid = uuid.uuid4().hex
    key: RSAKey | ECKey
    if alg == "RS384":
        key = RSAKey.generate_key(3072, parameters={"kid": kid, "alg": alg, "use": "sig"},
                                  private=True)
    else:
        key = ECKey.generate_key("P-384", parameters={"kid": kid, "alg": "ES384", "use": "sig"},
                                 private=True)
    return dict(key.as_dict(private=True))


@dataclass
class _Cached:
    token: str
    expires: float


class TokenSource:
    def __init__(self, key: RSAKey | ECKey | None, *, default_scope: str = DEFAULT_SCOPE,
                 peer: str = "payer") -> None:
        self.key, self.peer = key, peer
        self.default_scope = default_scope
        self.cache: dict[str, _Cached] = {}
        self.token_urls: dict[str, str] = {}

    def forget(self, endpoint: PayerEndpoint) -> None:
        self.cache.pop(endpoint.address, None)

    async def token(self, http: httpx.AsyncClient, endpoint: PayerEndpoint) -> str:
        cached = self.cache.get(endpoint.address)
        if cached is not None and cached.expires > time.monotonic():
            return cached.token
        if self.key is None:
            raise Upstream(f"{endpoint.reference} requires OAuth, but FHIR_CLIENT_KEY_FILE is "
                           "not set", code="security")
        token_url = await self._token_url(http, endpoint)
        alg = str(self.key.as_dict(private=False)["alg"])
        now = int(time.time())
        assertion = jwt.encode(
            {"alg": alg, "kid": self.key.kid, "typ": "JWT"},
            {"iss": endpoint.oauth_client_id, "sub": endpoint.oauth_client_id, "aud": token_url,
             "iat": now, "exp": now + ASSERTION_LIFETIME, "jti": uuid.uuid4().hex},
            self.key, algorithms=[alg])
        form = {"grant_type": "client_credentials", "scope": endpoint.oauth_scope or self.default_scope,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        response = await self._call(endpoint, http,
                                    http.build_request("POST", token_url, data=form))
        if response.status_code != 200:
            raise self._failed(endpoint, f"token request refused (HTTP {response.status_code}, "
                               f"{_oauth_error(response)})")
        try:
            body = response.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError):
            raise self._failed(endpoint, "no access token in the token answer") from None
        self.cache[endpoint.address] = _Cached(token, time.monotonic() + lifetime - EARLY_REFRESH)
        return token

    async def _token_url(self, http: httpx.AsyncClient, endpoint: PayerEndpoint) -> str:
        if endpoint.address not in self.token_urls:
            url = f"{endpoint.address.rstrip('/')}/.well-known/smart-configuration"
            response = await self._call(endpoint, http, http.build_request("GET", url))
            try:
                token_url = response.json()["token_endpoint"] if response.status_code == 200 \
                    else None
            except (ValueError, KeyError, TypeError):
                token_url = None
            if not isinstance(token_url, str) or not token_url.startswith(("http://",
                                                                            "https://")):
                raise self._failed(endpoint, "no SMART token_endpoint published (HTTP "
                                   f"{response.status_code})")
            self.token_urls[endpoint.address] = token_url
        return self.token_urls[endpoint.address]

    async def _call(self, endpoint: PayerEndpoint, http: httpx.AsyncClient,
                    request: httpx.Request) -> httpx.Response:
        try:
            response = await send_bounded(http, request, max_bytes=OAUTH_MAX_BYTES)
        except AnswerTooLarge as large:
            raise self._failed(endpoint, f"OAuth call failed ({large})") from None
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"The {self.peer} at {endpoint.reference} did not answer in "
                                  "time") from None
        except PeerAddressRefused as refused:
            raise self._failed(endpoint, f"address refused by the peer guard: {refused}"
                               ) from None
        except httpx.HTTPError as exc:
            raise self._failed(endpoint, f"OAuth call failed ({type(exc).__name__})") from None
        return response

    def _failed(self, endpoint: PayerEndpoint, detail: str) -> Upstream:
        return unreachable(self.peer, endpoint.reference, detail)


def _oauth_error(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return str(error)[:40] if error else "no error code"
