"""Records (``storage/records.py``) as one MongoDB collection per kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from fhir_server.storage.mongo.fencing import check_fences
from fhir_server.storage.mongo.guarded import Guarded
from fhir_server.storage.records import Doc, Records


class MongoRecords(Records):
    def __init__(self, db: AsyncDatabase[Doc], guarded: Guarded) -> None:
        self.db = db
        self.guarded = guarded

    async def insert(self, *, kind: str, doc: Doc) -> bool:
        await check_fences(self.db, self.guarded)
        try:
            await self.db[kind].insert_one(dict(doc))
        except DuplicateKeyError:
            return False
        return True

    async def get(self, *, kind: str, id_: str) -> Doc | None:
        found: Doc | None = await self.db[kind].find_one({"_id": id_})
        return found

    async def delete(self, *, kind: str, id_: str, expect: Mapping[str, Any] | None = None
                     ) -> bool:
        await check_fences(self.db, self.guarded)
        if expect:
            return await self.guarded.delete(self.db[kind], id_, expect)
        return (await self.db[kind].delete_one({"_id": id_})).deleted_count == 1

    async def set_fields(self, *, kind: str, id_: str, fields: Doc,
                         expect: Mapping[str, Any] | None = None) -> bool:
        await check_fences(self.db, self.guarded)
        if expect:
            return await self.guarded.update(self.db[kind], id_, expect, {"$set": fields})
        result = await self.db[kind].update_one({"_id": id_}, {"$set": fields})
        return bool(result.matched_count)

    async def increment(self, *, kind: str, id_: str, field: str, on_insert: Doc,
                        by: int = 1) -> Doc:
        await check_fences(self.db, self.guarded)
        async with self.guarded.serialized(self.db[kind], id_):
            try:
                after: Doc | None = await self._increment(kind, id_, field, on_insert, by)
            except DuplicateKeyError:  # two upserts raced to insert it: the other one did
                after = await self._increment(kind, id_, field, on_insert, by)
        return after or {"_id": id_, field: by, **on_insert}

    async def _increment(self, kind: str, id_: str, field: str, on_insert: Doc,
                         by: int) -> Doc | None:
        found: Doc | None = await self.db[kind].find_one_and_update(
            {"_id": id_}, {"$inc": {field: by}, "$setOnInsert": on_insert}, upsert=True,
            return_document=ReturnDocument.AFTER)
        return found

    async def all(self, *, kind: str) -> list[Doc]:
        return [d async for d in self.db[kind].find({})]

    async def purge(self, *, kind: str, before: float) -> int:
        return (await self.db[kind].delete_many({"exp": {"$lt": before}})).deleted_count
