"""Token signing keys held outside the database, in PEM files the operator provides.

``FHIR_SIGNING_KEY_FILE``: the private key that signs every access and id token (RSA for
RS256, EC P-256 / P-384 for ES256 / ES384, as ``FHIR_AUTH_SIGNING_ALG`` says). Its
``kid`` is its RFC 7638 thumbprint. Like ssh with a private key, the server refuses to
start when the file can be read by its group or by others.

``FHIR_SIGNING_KEY_VERIFY_FILES``: keys (public or private PEM) that verify tokens and
are published in the JWKS but never sign: after a rotation the previous key, until the
tokens it signed have expired; with several processes, the next key, published
everywhere before any process signs with it.

With a key file, the keys kept in the database neither sign nor verify: whoever can
read the database cannot mint tokens the server accepts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from joserfc import jwk
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from fhir_server.auth.keys import AnyKey, SigningKey
from fhir_server.core.config import Settings

CURVE_ALG = {"P-256": "ES256", "P-384": "ES384"}
MIN_RSA_BITS = 2048


class KeyFileError(ValueError):
    """A key file that cannot be used, said in one line (no key material in it)."""


def _import(pem: bytes, path: Path) -> AnyKey:
    for kty in ("RSA", "EC"):
        try:
            key = jwk.import_key(pem, kty)
        except (JoseError, ValueError, TypeError):
            continue
        if isinstance(key, RSAKey | ECKey):
            return key
    raise KeyFileError(f"{path} holds no RSA or EC key in PEM form")


def alg_of(key: AnyKey, path: Path) -> str:
    """The JWS algorithm a key signs with (RS256, ES256, ES384)."""
    if isinstance(key, RSAKey):
        size = key.raw_value.key_size
        if size < MIN_RSA_BITS:
            raise KeyFileError(f"{path} holds a {size}-bit RSA key; at least "
                               f"{MIN_RSA_BITS} bits are needed")
        return "RS256"
    crv = str(key.as_dict(private=False).get("crv"))
    if crv not in CURVE_ALG:
        raise KeyFileError(f"{path} holds an EC key on {crv}; P-256 or P-384 are supported")
    return CURVE_ALG[crv]


def read_key_file(path: Path, *, signing: bool) -> SigningKey:
    """The key in ``path``; a private key must be readable by its owner alone, and the
    signing key must be private."""
    try:
        # One open: the mode checked is the mode of the file read (a path swapped between a
        # stat and a read could not slip another file in). Symlinks are followed, as
        # Kubernetes mounts secrets through them.
        with open(path, "rb") as file:
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
            pem = file.read()
    except OSError as error:
        raise KeyFileError(f"cannot read the key file {path}: {error.strerror}") from None
    key = _import(pem, path)
    private = key.is_private
    if signing and not private:
        raise KeyFileError(f"FHIR_SIGNING_KEY_FILE {path} holds a public key; the signing "
                           "key must be a private key")
    if private and mode & 0o077:
        raise KeyFileError(f"the private key file {path} is readable by others (mode "
                           f"{mode:04o}): run `chmod 600 {path}`; the server does not use a "
                           "private key that others can read")
    public = key if not private else jwk.import_key(key.as_dict(private=False))
    assert isinstance(public, RSAKey | ECKey)
    return SigningKey(kid=key.thumbprint(), alg=alg_of(key, path),
                      key=key if signing else public, created=0, retired=None)


class FileKeyRing:
    """The keys of ``FHIR_SIGNING_KEY_FILE`` and ``FHIR_SIGNING_KEY_VERIFY_FILES``, read
    once at start-up; the same methods as ``keys.KeyRing``."""

    def __init__(self, *, signing: SigningKey, verifying: list[SigningKey]) -> None:
        self.signing = signing
        self._keys = {k.kid: k for k in verifying}
        self._keys[signing.kid] = signing

    async def ensure(self) -> SigningKey:
        return self.signing

    async def signing_key(self) -> SigningKey:
        return self.signing

    async def verification_key(self, kid: str) -> SigningKey | None:
        return self._keys.get(kid)

    async def rotate(self) -> SigningKey:
        raise KeyFileError("the signing key is FHIR_SIGNING_KEY_FILE: rotate it by giving "
                           "the server a new file and the old one in "
                           "FHIR_SIGNING_KEY_VERIFY_FILES (see docs/security.md)")

    async def jwks(self) -> dict[str, Any]:
        ordered = [self.signing, *(k for k in self._keys.values() if k is not self.signing)]
        return {"keys": [k.public_jwk() for k in ordered]}


def file_key_ring(settings: Settings) -> FileKeyRing | None:
    """The keys of the configured files (None: no FHIR_SIGNING_KEY_FILE, the database's)."""
    if settings.fhir_signing_key_file is None:
        if settings.fhir_signing_key_verify_files:
            raise KeyFileError("FHIR_SIGNING_KEY_VERIFY_FILES needs FHIR_SIGNING_KEY_FILE")
        return None
    signing = read_key_file(settings.fhir_signing_key_file, signing=True)
    if signing.alg != settings.fhir_auth_signing_alg:
        raise KeyFileError(f"FHIR_SIGNING_KEY_FILE holds a key for {signing.alg}, but "
                           f"FHIR_AUTH_SIGNING_ALG is {settings.fhir_auth_signing_alg}")
    verifying = [read_key_file(path, signing=False)
                 for path in settings.fhir_signing_key_verify_files]
    return FileKeyRing(signing=signing, verifying=verifying)
