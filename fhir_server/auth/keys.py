"""The signing keys of access and id tokens, kept in the database (``auth_keys``), sealed
with FHIR_KEY_ENCRYPTION_KEY when it is set (``key_sealing.py``; a key held outside the
database instead: ``key_files.py``).

A key is generated at first start. ``rotate()`` adds a new key, which signs from
then on, and retires the others: a retired key still verifies (and is still
published in the JWKS) until every token it signed has expired, then it is gone.
Keys are cached in the process; an unknown ``kid`` (a key another process made)
reloads them, at most once a second, and the signing key is re-read every few
seconds so that a rotation by ``fhir-server keys rotate`` takes effect everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwk
from joserfc.jwk import ECKey, RSAKey

from fhir_server.auth.key_sealing import seal, unseal
from fhir_server.storage.auth_store import AuthStore, now_s
from fhir_server.storage.locks import Locks

log = logging.getLogger("fhir_server.auth")

SIGNING_KEY_REFRESH = 5.0  # seconds between re-reads of the current signing key
MISS_RELOAD_INTERVAL = 1.0  # least seconds between reloads caused by an unknown kid
FIRST_KEY_LEASE = "auth-first-key"
RETIRED_GRACE = 60  # seconds a retired key outlives the longest token it may have signed

AnyKey = RSAKey | ECKey


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: AnyKey
    created: int
    retired: int | None

    def verifies_at(self, now: int, lifetime: int) -> bool:
        return self.retired is None or self.retired + lifetime + RETIRED_GRACE > now

    def public_jwk(self) -> dict[str, Any]:
        return {**self.key.as_dict(private=False), "kid": self.kid, "alg": self.alg, "use": "sig"}


def generate(alg: str) -> AnyKey:
    """A new private key for ``alg`` (CPU-bound for RSA: call it in a thread)."""
    if alg == "RS256":
        return jwk.generate_key("RSA", 2048)
    if alg == "ES256":
        return jwk.generate_key("EC", "P-256")
    if alg == "ES384":
        return jwk.generate_key("EC", "P-384")
    raise ValueError(f"unsupported signing algorithm {alg}")


def _from_doc(doc: dict[str, Any], kek: bytes | None) -> SigningKey:
    pem = unseal(doc["sealed"], kid=doc["_id"], kek=kek) if doc.get("sealed") else doc["pem"]
    key = jwk.import_key(pem, "RSA" if doc["alg"].startswith("RS") else "EC")
    if not isinstance(key, RSAKey | ECKey):
        raise ValueError(f"auth_keys/{doc['_id']} is not an RSA or EC key")
    return SigningKey(kid=doc["_id"], alg=doc["alg"], key=key, created=int(doc["created"]),
                      retired=doc.get("retired"))


class KeyRing:
    """The keys of one deployment, cached in this process."""

    def __init__(self, *, store: AuthStore, alg: str, token_lifetime: int,
                 kek: bytes | None = None) -> None:
        self.store = store
        self.alg = alg
        self.token_lifetime = token_lifetime
        self.kek = kek  # FHIR_KEY_ENCRYPTION_KEY: keys stored sealed (key_sealing.py)
        self._keys: dict[str, SigningKey] = {}
        self._loaded_at = 0.0
        self._miss_reload_at = 0.0
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        keys = {}
        for doc in await self.store.all(kind="keys"):
            key = _from_doc(doc, self.kek)
            keys[key.kid] = key
            if self.kek is not None and doc.get("pem"):  # stored in the clear before
                await self.store.set_fields(kind="keys", id_=key.kid, fields={
                    "sealed": seal(doc["pem"], kid=key.kid, kek=self.kek), "pem": None})
                log.info("sealed a token signing key stored in the clear kid=%s", key.kid)
        self._keys = keys
        self._loaded_at = time.monotonic()

    def _current(self) -> SigningKey | None:
        active = [k for k in self._keys.values() if k.retired is None]
        return max(active, key=lambda k: (k.created, k.kid)) if active else None

    async def ensure(self) -> SigningKey:
        """The current signing key, generating the first one if there is none."""
        async with self._lock:
            await self.load()
            current = self._current()
            if current is not None:
                return current
            # Several processes may start on a new database at once (FHIR_WORKERS, replicas):
            # one makes the first key, the others wait for it and use it.
            async with Locks(self.store.records).hold([FIRST_KEY_LEASE], wait=30.0):
                await self.load()
                current = self._current()
                if current is None:
                    current = await self._generate()
                    log.info("generated the first token signing key kid=%s alg=%s",
                             current.kid, current.alg)
            return current

    async def signing_key(self) -> SigningKey:
        if time.monotonic() - self._loaded_at > SIGNING_KEY_REFRESH:
            await self.load()
        current = self._current()
        return current if current is not None else await self.ensure()

    async def verification_key(self, kid: str) -> SigningKey | None:
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._miss_reload_at > MISS_RELOAD_INTERVAL:
            self._miss_reload_at = time.monotonic()
            await self.load()
            key = self._keys.get(kid)
        if key is None or not key.verifies_at(now_s(), self.token_lifetime):
            return None
        return key

    async def rotate(self) -> SigningKey:
        """A new signing key; the previous ones verify until their tokens have expired."""
        async with self._lock:
            await self.load()
            new = await self._generate()
            now = now_s()
            for key in self._keys.values():
                if key.kid != new.kid and key.retired is None:
                    await self.store.set_fields(kind="keys", id_=key.kid, fields={
                        "retired": now, "exp": now + self.token_lifetime + RETIRED_GRACE})
            await self.load()
            log.info("rotated the token signing key kid=%s alg=%s", new.kid, new.alg)
            return new

    async def jwks(self) -> dict[str, Any]:
        if time.monotonic() - self._loaded_at > SIGNING_KEY_REFRESH:
            await self.load()
        now = now_s()
        return {"keys": [k.public_jwk() for k in sorted(self._keys.values(),
                                                         key=lambda k: (-k.created, k.kid))
                         if k.verifies_at(now, self.token_lifetime)]}

    async def _generate(self) -> SigningKey:
        key = await asyncio.to_thread(generate, self.alg)
        kid = key.thumbprint()
        pem = key.as_pem(private=True).decode("ascii")
        doc = {"_id": kid, "alg": self.alg, "created": now_s(),
               **({"pem": pem} if self.kek is None
                  else {"sealed": seal(pem, kid=kid, kek=self.kek)})}
        await self.store.insert(kind="keys", doc=doc)
        signing = _from_doc(doc, self.kek)
        self._keys[kid] = signing
        return signing
