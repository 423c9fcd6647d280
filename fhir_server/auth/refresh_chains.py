"""Refresh-token chains: reusing a rotated-out refresh token revokes the whole chain.

Each use of a refresh token consumes it and issues the next one of the same chain
(``family``: the chain's id, carried by every token of it). A consumed token leaves a
tombstone (kind ``refresh_used``), written before the token is taken, so that of two uses
of one token exactly one wins. A token presented again after its use means it leaked (the
legitimate client or an attacker holds a copy): the chain is revoked (kind
``refresh_revoked``), so that neither holder can refresh again (OAuth 2.0 Security BCP,
RFC 9700 4.14.2). Access tokens already issued run out on their own (an hour at most).
"""

from __future__ import annotations

import secrets
from typing import Any

from fhir_server.auth.tokens import AuthService
from fhir_server.storage.auth_store import now_s

Doc = dict[str, Any]


def new_family() -> str:
    return secrets.token_urlsafe(12)


def family_of(key: str, record: Doc) -> str:
    """The chain of a stored refresh token (a token stored before chains: its own)."""
    return str(record.get("family") or key)


async def live(auth: AuthService, key: str) -> Doc | None:
    """The refresh token stored under ``key`` if it is valid: unexpired, unused, and its
    chain not revoked."""
    record = await auth.store.get(kind="refresh", id_=key)
    if record is None:
        return None
    if await auth.store.get(kind="refresh_revoked", id_=family_of(key, record)) is not None:
        return None
    return record


async def use(auth: AuthService, key: str, record: Doc) -> bool:
    """Consume the token: whether this call did (False: it was used before, now or earlier,
    and its chain is revoked)."""
    family = family_of(key, record)
    if not await auth.store.insert(kind="refresh_used", doc={"_id": key, "family": family,
                                                             "exp": record["exp"]}):
        await revoke_chain(auth, family)
        return False
    return await auth.store.take(kind="refresh", id_=key) is not None


async def revoke_if_reused(auth: AuthService, key: str) -> None:
    """A token that is not live: if it was used before, its chain is revoked."""
    used = await auth.store.get(kind="refresh_used", id_=key)
    if used is not None:
        await revoke_chain(auth, str(used["family"]))


async def revoke_chain(auth: AuthService, family: str) -> None:
    settings = auth.settings
    longest = max(settings.fhir_auth_refresh_lifetime, settings.fhir_auth_online_refresh_lifetime)
    await auth.store.insert(kind="refresh_revoked", doc={"_id": family,
                                                         "exp": now_s() + longest})
