"""What the repository hands back: stored versions, with their server metadata."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

# Defined with the query model (below storage), whose ``ap`` prefix needs it too.
from fhir_server.search.dates import now_ms as now_ms


def instant(ts: datetime) -> str:
    """FHIR instant text for a stored timestamp: 2026-11-21T22:58:01.123Z."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True)
class StoredVersion:
    """One version of a resource as stored: its JSON text, or a deletion."""

    type_: str
    id_: str
    version: int
    last_updated: datetime
    text: str | None  # None for a deletion
    method: str  # POST, PUT, PATCH or DELETE

    @property
    def deleted(self) -> bool:
        return self.text is None

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def reference(self) -> str:
        return f"{self.type_}/{self.id_}"


@dataclass(frozen=True)
class ChangeEvent:
    """One committed change, as the outbox keeps it (``Repository.events``).

    Numbers rise in commit order as a reader sees them: every engine hands out events in
    number order and never one above an event whose commit is still unsettled, so a reader
    that remembers the last number it handled never skips one. A number may be missing (a
    write that rolled back, or retention); it is never reused.

    ``trace`` is the W3C ``traceparent`` of the span that committed it (None when tracing
    was off or no span was current), so that its deliveries continue that trace."""

    number: int
    type_: str
    id_: str
    version: int
    action: str  # create, update or delete
    at: datetime
    trace: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.type_}/{self.id_}"


def action_of(*, text: str | None, previous_live: bool) -> str:
    """The change a write makes: a deletion, the first live version (a new resource or one
    written again after its deletion), or an update of a live one."""
    if text is None:
        return "delete"
    return "update" if previous_live else "create"
