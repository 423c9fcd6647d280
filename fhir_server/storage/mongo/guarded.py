"""Guarded single-document writes: change a document only if it still looks as expected.

On MongoDB the expectation is part of the filter (``{_id, v: 3}``), served by the
``_id`` index. FerretDB 1.24 on SQLite pushes down only a filter that is exactly
``{_id: ...}``; any other filter reads and decodes the whole collection, which
made every conditional write cost a full scan. There the check runs under a
per-document lock of this process: read by ``_id``, compare, write by ``_id``.
That is sound because the embedded FerretDB serves one server process (it owns
its SQLite files); MongoDB deployments keep the filter form.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

ABSENT = object()  # expectation: the field is not there
Doc = dict[str, Any]


def expect_filter(id_: Any, expect: Mapping[str, Any]) -> Doc:
    """The document ``id_`` if it still looks as ``expect`` says (MongoDB's form)."""
    return {"_id": id_, **{k: ({"$exists": False} if v is ABSENT else v)
                           for k, v in expect.items()}}


def _holds(doc: Mapping[str, Any] | None, expect: Mapping[str, Any]) -> bool:
    if doc is None:
        return False
    for key, value in expect.items():
        if value is ABSENT:
            if key in doc:
                return False
        elif doc.get(key) != value:
            return False
    return True


class Guarded:
    def __init__(self, *, local_locks: bool) -> None:
        self.local = local_locks
        # Filters may carry more than _id (expectations, shard keys): MongoDB. FerretDB
        # pushes down only a filter that is exactly {_id}.
        self.targeted = not local_locks
        self._locks: weakref.WeakValueDictionary[tuple[str, Any], asyncio.Lock] = (
            weakref.WeakValueDictionary())

    def _lock(self, coll: AsyncCollection[Doc], id_: Any) -> asyncio.Lock:
        key = (coll.name, id_)
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    def serialized(self, coll: AsyncCollection[Doc], id_: Any) -> AbstractAsyncContextManager[Any]:
        """Around a read-modify-write of one document that MongoDB makes atomic on its own
        (``$inc`` in ``findAndModify``) and FerretDB does not: this process's lock there."""
        return self._lock(coll, id_) if self.local else nullcontext()

    async def replace(self, coll: AsyncCollection[Doc], id_: Any, expect: Mapping[str, Any],
                      new: Doc) -> bool:
        if not self.local:
            return (await coll.replace_one(expect_filter(id_, expect), new)).matched_count == 1
        async with self._lock(coll, id_):
            if not _holds(await coll.find_one({"_id": id_}), expect):
                return False
            return (await coll.replace_one({"_id": id_}, new)).matched_count == 1

    async def update(self, coll: AsyncCollection[Doc], id_: Any, expect: Mapping[str, Any],
                     update: Doc) -> bool:
        if not self.local:
            return (await coll.update_one(expect_filter(id_, expect), update)).matched_count == 1
        async with self._lock(coll, id_):
            if not _holds(await coll.find_one({"_id": id_}), expect):
                return False
            return (await coll.update_one({"_id": id_}, update)).matched_count == 1

    async def delete(self, coll: AsyncCollection[Doc], id_: Any,
                     expect: Mapping[str, Any]) -> bool:
        if not self.local:
            return (await coll.delete_one(expect_filter(id_, expect))).deleted_count == 1
        async with self._lock(coll, id_):
            if not _holds(await coll.find_one({"_id": id_}), expect):
                return False
            return (await coll.delete_one({"_id": id_})).deleted_count == 1
