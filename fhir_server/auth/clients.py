"""The client registry (``auth_clients``): SMART apps and backend services.

* public app: redirect URIs, no secret (PKCE protects its codes);
* confidential app: redirect URIs and a secret (``client_secret_basic``/``_post``),
  or a JWKS (``private_key_jwt``, "confidential asymmetric");
* backend service: a JWKS or JWKS URL and no redirect URI; ``client_credentials``
  with a signed assertion, ``system/`` scopes only.

A client's web origins (``Client.web_origins``) are where a browser may use it from
(CORS, ``api/cors.py``): its http(s) redirect URIs' origins and the ``origins`` it was
registered with.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from fhir_server.auth.passwords import new_client_secret
from fhir_server.auth.scopes import parse_scopes
from fhir_server.core.web_origin import origin_of, parse_origin
from fhir_server.storage.auth_store import AuthStore, now_s

CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")


def new_client_id() -> str:
    """16 random URL-safe characters, the first a letter or digit: an id starting with '-'
    reads as an option on the command line (``fhir-server token --client -x...``)."""
    client_id = secrets.token_urlsafe(12)
    while not client_id[0].isalnum():
        client_id = secrets.token_urlsafe(12)
    return client_id


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    scope: str  # the scopes this client may be granted
    redirect_uris: tuple[str, ...] = ()
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    origins: tuple[str, ...] = ()  # registered beyond the redirect URIs' (normalised)

    @property
    def web_origins(self) -> tuple[str, ...]:
        """Origins a browser may use this client from: its http(s) redirect URIs' and the
        registered ones."""
        from_redirects = (origin_of(uri) for uri in self.redirect_uris)
        return tuple(dict.fromkeys([*(o for o in from_redirects if o), *self.origins]))

    @property
    def asymmetric(self) -> bool:
        return self.jwks is not None or self.jwks_url is not None

    @property
    def public(self) -> bool:
        return self.secret_hash is None and not self.asymmetric

    @property
    def backend(self) -> bool:
        return self.asymmetric and not self.redirect_uris

    @property
    def kind(self) -> str:
        if self.backend:
            return "backend"
        return "public" if self.public else "confidential"

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Client:
        return cls(client_id=doc["_id"], name=doc.get("name", ""), scope=doc.get("scope", ""),
                   redirect_uris=tuple(doc.get("redirect_uris", ())),
                   secret_hash=doc.get("secret_hash"), jwks=doc.get("jwks"),
                   jwks_url=doc.get("jwks_url"), origins=tuple(doc.get("origins", ())))


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment or (parts.scheme in ("http", "https") and not parts.netloc):
        raise ValueError(f"redirect URI {uri[:200]!r} must be an absolute URI without a fragment")


def check_jwks(jwks: Any) -> dict[str, Any]:
    """A public JWK Set of RSA or EC keys, as registered (private parts refused)."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValueError('the JWKS must be a JSON object with a non-empty "keys" list')
    if any(not isinstance(k, dict) or "d" in k for k in jwks["keys"]):
        raise ValueError("the JWKS must hold public keys only (no private \"d\" member)")
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]  # shape checked above
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"the JWKS does not parse: {type(exc).__name__}") from exc
    if not all(isinstance(k, RSAKey | ECKey) for k in keys.keys):
        raise ValueError("the JWKS may hold RSA and EC keys only")
    return jwks


def _check_scopes(scope: str, *, backend: bool) -> str:
    parsed = parse_scopes(scope)
    if parsed.invalid:
        raise ValueError(f"invalid scope {parsed.invalid[0]}")
    if not parsed.resource and not parsed.other:
        raise ValueError("--scope must name at least one scope")
    if backend and (parsed.other or any(s.context != "system" for s in parsed.resource)):
        raise ValueError("a backend client may only have system/ scopes")
    if not backend and any(s.context == "system" for s in parsed.resource):
        raise ValueError("system/ scopes are for backend clients (--jwks-file or --jwks-url "
                         "without --redirect-uri)")
    return " ".join(scope.split())


async def register_client(*, store: AuthStore, name: str, scope: str, redirect_uris: list[str],
                          confidential: bool = False, jwks: dict[str, Any] | None = None,
                          jwks_url: str | None = None,
                          client_id: str | None = None,
                          origins: list[str] | None = None) -> tuple[Client, str | None]:
    """Register a client; returns it and its secret (shown once; only its hash is kept).
    ``origins``: web origins it may be used from besides its redirect URIs' (CORS)."""
    client_id = client_id or new_client_id()
    if not CLIENT_ID.match(client_id):
        raise ValueError("a client id has 1-64 letters, digits, '.', '_', '~' or '-'")
    if jwks is not None and jwks_url is not None:
        raise ValueError("give either a JWKS or a JWKS URL, not both")
    asymmetric = jwks is not None or jwks_url is not None
    if not redirect_uris and not asymmetric:
        raise ValueError("an app needs --redirect-uri; a backend client needs --jwks-file or "
                         "--jwks-url")
    if confidential and asymmetric:
        raise ValueError("--confidential (a secret) and a JWKS exclude each other")
    for uri in redirect_uris:
        _check_redirect_uri(uri)
    if jwks_url is not None and urlsplit(jwks_url).scheme not in ("http", "https"):
        raise ValueError("--jwks-url must be an http(s) URL")
    scope = _check_scopes(scope, backend=asymmetric and not redirect_uris)
    extra_origins = list(dict.fromkeys(parse_origin(o) for o in origins or ()))
    secret, hashed = new_client_secret() if confidential else (None, None)
    doc: dict[str, Any] = {"_id": client_id, "name": name, "scope": scope,
                           "redirect_uris": list(dict.fromkeys(redirect_uris)), "created": now_s()}
    if hashed:
        doc["secret_hash"] = hashed
    if jwks is not None:
        doc["jwks"] = check_jwks(jwks)
    if jwks_url is not None:
        doc["jwks_url"] = jwks_url
    if extra_origins:
        doc["origins"] = extra_origins
    if not await store.insert(kind="clients", doc=doc):
        raise ValueError(f"a client with id {client_id!r} exists already")
    return Client.from_doc(doc), secret


async def change_origins(*, store: AuthStore, client_id: str, add: list[str],
                         remove: list[str]) -> Client:
    """Add and remove a client's registered web origins (those of its redirect URIs stay
    while the redirect URIs do). Returns the client as changed."""
    client = await get_client(store=store, client_id=client_id)
    if client is None:
        raise ValueError(f"no client {client_id[:64]!r}")
    origins = list(client.origins)
    for origin in dict.fromkeys(parse_origin(o) for o in remove):
        if origin not in origins:
            derived = origin in client.web_origins
            raise ValueError(f"{origin} is " + ("the origin of a redirect URI of this client, "
                                                 "not a registered one" if derived
                                                 else "not an origin of this client"))
        origins.remove(origin)
    origins += [o for o in dict.fromkeys(parse_origin(o) for o in add) if o not in origins]
    if not await store.set_fields(kind="clients", id_=client_id, fields={"origins": origins}):
        raise ValueError(f"no client {client_id[:64]!r}")
    return replace(client, origins=tuple(origins))


async def get_client(*, store: AuthStore, client_id: str) -> Client | None:
    doc = await store.get(kind="clients", id_=client_id)
    return Client.from_doc(doc) if doc is not None else None
