"""What the X12 adapter must remember across restarts: control numbers and poll cursors.

``next_number(name)`` is an atomic counter (ISA13, GS06 and ST02 come from it);
``cursor(name)`` / ``put_cursor(name, value)`` keep the last outbox file applied per
clearinghouse. Both are records of kind ``x12`` (``storage/records.py``), whose atomic
increment and single-record writes every engine provides.
"""

from __future__ import annotations

from fhir_server.storage.records import Records

KIND = "x12"


class X12State:
    def __init__(self, records: Records) -> None:
        self.records = records

    async def next_number(self, name: str) -> int:
        """The next number of a counter (1, 2, ...); concurrent callers get different ones."""
        after = await self.records.increment(kind=KIND, id_=f"counter:{name}", field="count",
                                             on_insert={})
        return int(after["count"])

    async def cursor(self, name: str) -> str | None:
        doc = await self.records.get(kind=KIND, id_=f"cursor:{name}")
        value = (doc or {}).get("cursor")
        return value if isinstance(value, str) else None

    async def put_cursor(self, name: str, value: str) -> None:
        key = f"cursor:{name}"
        if await self.records.set_fields(kind=KIND, id_=key, fields={"cursor": value}):
            return
        if not await self.records.insert(kind=KIND, doc={"_id": key, "cursor": value}):
            await self.records.set_fields(kind=KIND, id_=key, fields={"cursor": value})
