"""Small records beside the resources: the authorization server's state, search snapshots,
leases, cursors and counters.

A record is a JSON object with a string ``_id``, kept per ``kind``. Every
engine makes each of these operations atomic on its own, which is all the
callers rely on: ``insert`` reports a duplicate ``_id``, ``delete`` reports
whether this caller removed the record (single use), ``increment`` adds to a
counter that concurrent callers never lose. Records that carry ``exp`` (epoch
seconds) can be swept with ``purge``; callers treat an expired record as
absent whatever the sweep has done.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

Doc = dict[str, Any]


class Records(ABC):
    @abstractmethod
    async def insert(self, *, kind: str, doc: Doc) -> bool:
        """Insert; False when a record with this ``_id`` exists (nothing is changed)."""

    @abstractmethod
    async def get(self, *, kind: str, id_: str) -> Doc | None: ...

    @abstractmethod
    async def delete(self, *, kind: str, id_: str, expect: Mapping[str, Any] | None = None
                     ) -> bool:
        """Delete the record if its fields hold ``expect``; whether this call deleted it."""

    @abstractmethod
    async def set_fields(self, *, kind: str, id_: str, fields: Doc,
                         expect: Mapping[str, Any] | None = None) -> bool:
        """Set top-level fields of an existing record whose fields hold ``expect``; whether
        this call changed it."""

    @abstractmethod
    async def increment(self, *, kind: str, id_: str, field: str, on_insert: Doc,
                        by: int = 1) -> Doc:
        """Add ``by`` to ``field`` (created with ``on_insert`` and ``by`` when the record is
        new); the record after the change."""

    @abstractmethod
    async def all(self, *, kind: str) -> list[Doc]: ...

    @abstractmethod
    async def purge(self, *, kind: str, before: float) -> int:
        """Delete the records whose ``exp`` is before ``before``; how many."""
