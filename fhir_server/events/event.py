"""An event as consumers receive it: the outbox's change with the journeys it belongs to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server.storage.model import ChangeEvent, instant


@dataclass(frozen=True)
class Event:
    number: int
    type_: str
    id_: str
    version: int
    action: str  # create, update or delete
    topics: tuple[str, ...]  # the journey topics' ids (``topics.py``), often none
    at: datetime
    trace: str | None = None  # the committing span's traceparent (``ChangeEvent.trace``)

    @classmethod
    def of(cls, change: ChangeEvent, topics: tuple[str, ...]) -> Event:
        return cls(number=change.number, type_=change.type_, id_=change.id_,
                   version=change.version, action=change.action, topics=topics, at=change.at,
                   trace=change.trace)

    @property
    def reference(self) -> str:
        return f"{self.type_}/{self.id_}"

    def body(self) -> dict[str, Any]:
        """The event as JSON: identifiers only, never the resource's content (nor its trace:
        a message carries that in its headers)."""
        return {"number": self.number, "type": self.type_, "id": self.id_,
                "versionId": str(self.version), "action": self.action,
                "topics": list(self.topics), "at": instant(self.at)}
