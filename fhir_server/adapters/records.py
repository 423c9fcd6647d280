"""Small records the adapters keep between calls: the HL7 v2 messages already applied
(by sender and MSH-10), each EHR endpoint's sync watermark, bulk export jobs.

A namespace of the repository's records (``storage/records.py``, kind ``adapter``): get
and put a JSON-like value by key, on whichever engine the server runs.
"""

from __future__ import annotations

from typing import Any

from fhir_server.storage.records import Records as Store
from fhir_server.storage.repository import Repository

KIND = "adapter"


class Records:
    def __init__(self, store: Store, namespace: str) -> None:
        self.store = store
        self.namespace = namespace

    def _id(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    async def get(self, key: str) -> dict[str, Any] | None:
        doc = await self.store.get(kind=KIND, id_=self._id(key))
        return None if doc is None else dict(doc.get("value") or {})

    async def put(self, key: str, value: dict[str, Any]) -> None:
        """Create or replace the record."""
        id_ = self._id(key)
        if not await self.store.insert(kind=KIND, doc={"_id": id_, "value": value}):
            await self.store.set_fields(kind=KIND, id_=id_, fields={"value": value})

    async def delete(self, key: str) -> bool:
        """Remove the record; whether this call removed it."""
        return await self.store.delete(kind=KIND, id_=self._id(key))


def records(repo: Repository, namespace: str) -> Records:
    """The records of one namespace in the repository's database."""
    return Records(repo.records, namespace)
