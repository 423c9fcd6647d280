"""Small records the adapters keep between calls: the HL7 v2 messages already applied
(by sender and MSH-10) and each EHR endpoint's sync watermark.

One narrow interface (get and put a JSON-like record by key), kept here so that it can
move to the storage layer's own records; for now it lives in the authorization
server's key/value store (``storage/auth_store.py``, collection ``auth_records``), which
every engine serves by ``_id``.
"""

from __future__ import annotations

from typing import Any

from fhir_server.storage.auth_store import AuthStore
from fhir_server.storage.repository import Repository


class Records:
    def __init__(self, store: AuthStore, namespace: str) -> None:
        self.store = store
        self.namespace = namespace

    def _id(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    async def get(self, key: str) -> dict[str, Any] | None:
        doc = await self.store.get(kind="records", id_=self._id(key))
        return None if doc is None else dict(doc.get("value") or {})

    async def put(self, key: str, value: dict[str, Any]) -> None:
        """Create or replace the record."""
        id_ = self._id(key)
        if not await self.store.insert(kind="records", doc={"_id": id_, "value": value}):
            await self.store.set_fields(kind="records", id_=id_, fields={"value": value})


def records(repo: Repository, namespace: str) -> Records:
    """The records of one namespace in the repository's database (the one place that
    reaches for the store, so that moving the records elsewhere is a change here only)."""
    return Records(AuthStore(db=getattr(repo, "base", repo).db), namespace)
