"""Password hashing (argon2id) off the event loop, and client secrets.

Argon2 is deliberately slow (tens of milliseconds of CPU), so hashing and
verifying run in a worker thread. An unknown username is verified against a
dummy hash, so a failed login takes the same time whether the user exists or
not. Client secrets are generated here (256 random bits) and stored as their
SHA-256: a secret that long cannot be guessed, so a fast hash is enough and the
token endpoint does not pay argon2's cost on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8
_hasher = PasswordHasher()


@cache
def dummy_hash() -> str:
    """What an unknown user's password is checked against, so that it costs the same."""
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(hashed: str | None, password: str) -> bool:
    try:
        return _hasher.verify(hashed or dummy_hash(), password) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(hashed: str | None, password: str) -> bool:
    """Whether ``password`` matches; ``hashed=None`` (no such user) costs the same and fails."""
    return await asyncio.to_thread(_verify, hashed, password)


def new_client_secret() -> tuple[str, str]:
    """A new client secret and the hash to store (the secret itself is shown once)."""
    secret = secrets.token_urlsafe(32)
    return secret, secret_hash(secret)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(stored_hash: str | None, secret: str) -> bool:
    return stored_hash is not None and hmac.compare_digest(stored_hash, secret_hash(secret))


def token_hash(token: str) -> str:
    """The database key of an opaque token (codes, refresh tokens): never the token itself."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
