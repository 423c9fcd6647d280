"""What the X12 adapter must remember across restarts: control numbers and poll cursors.

One narrow interface, so that it can move to another store: ``next_number(name)``
(an atomic counter; ISA13, GS06 and ST02 come from it) and ``cursor(name)`` /
``put_cursor(name, value)`` (the last outbox file applied per clearinghouse). For now
it keeps its records in the authorization server's record store (``auth_x12``),
whose atomic counter and single-document writes every engine provides.
"""

from __future__ import annotations

from fhir_server.storage.auth_store import AuthStore

FOREVER = 100 * 365 * 86_400  # the record store's counters expire; these must not


class X12State:
    def __init__(self, store: AuthStore) -> None:
        self.store = store

    async def next_number(self, name: str) -> int:
        """The next number of a counter (1, 2, ...); concurrent callers get different ones."""
        return await self.store.count(kind="x12", id_=f"counter:{name}", window=FOREVER)

    async def cursor(self, name: str) -> str | None:
        doc = await self.store.get(kind="x12", id_=f"cursor:{name}")
        value = (doc or {}).get("cursor")
        return value if isinstance(value, str) else None

    async def put_cursor(self, name: str, value: str) -> None:
        key = f"cursor:{name}"
        if await self.store.set_fields(kind="x12", id_=key, fields={"cursor": value}):
            return
        if not await self.store.insert(kind="x12", doc={"_id": key, "cursor": value}):
            await self.store.set_fields(kind="x12", id_=key, fields={"cursor": value})
