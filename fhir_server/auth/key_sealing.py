"""Signing keys kept in the database, sealed with ``FHIR_KEY_ENCRYPTION_KEY``.

With the setting, a private key is stored as ``sealed``: AES-256-GCM of its PEM under the
key-encryption key, with a fresh 96-bit nonce and the key's ``kid`` as associated data (a
sealed key moved to another record does not open). A key stored in the clear by an
earlier start is sealed in place when the key ring loads it; run ``fhir-server keys
rotate`` afterwards, so that the key that signs was never written in the clear (the
database's free pages and logs may keep an old copy a while).

Without the setting keys are stored in the clear, and a database holding sealed keys is
refused with a message that says so.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fhir_server.storage.open import StorageError

NONCE_BYTES = 12


class KeySealError(StorageError):
    """A sealed key cannot be opened (no or another FHIR_KEY_ENCRYPTION_KEY)."""


def seal(pem: str, *, kid: str, kek: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(kek).encrypt(nonce, pem.encode("ascii"), kid.encode())
    return base64.b64encode(nonce + sealed).decode("ascii")


def unseal(sealed: str, *, kid: str, kek: bytes | None) -> str:
    if kek is None:
        raise KeySealError("the database's token signing keys are sealed with a key-"
                           "encryption key: set FHIR_KEY_ENCRYPTION_KEY as the server has it")
    raw = base64.b64decode(sealed)
    try:
        return AESGCM(kek).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], kid.encode()).decode()
    except InvalidTag:
        raise KeySealError(f"the token signing key {kid} does not open with this "
                           "FHIR_KEY_ENCRYPTION_KEY (another key sealed it)") from None
