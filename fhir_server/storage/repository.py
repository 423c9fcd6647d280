"""The repository interface: what every storage engine does, and nothing engine-specific.

Two engines implement it (``storage/sqlite``: the embedded default;
``storage/mongo``: MongoDB, with FerretDB standing in for it in tests), chosen
at start-up by ``storage/open.py``. Code above ``fhir_server/storage`` talks to
this interface only: resources and their history, searches described as
``search.query`` nodes, all-or-nothing multi-resource commits, small records
(``records``: the authorization server's state, search snapshots, leases), and the
concepts of code systems (``concepts``, see ``storage/concepts.py``).

Every engine keeps, per resource type, the current version of each resource
(its JSON text exactly as served, or a deletion) with the search values
extracted at write time, and an immutable history of every version.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server.search.query import Query, SortKey
from fhir_server.storage.concepts import Concepts
from fhir_server.storage.history import HistoryCursor as HistoryCursor
from fhir_server.storage.history import HistoryPage as HistoryPage
from fhir_server.storage.history import HistoryPlan as HistoryPlan
from fhir_server.storage.locks import Locks
from fhir_server.storage.model import ChangeEvent, StoredVersion
from fhir_server.storage.records import Records


class DatabaseUnavailable(Exception):
    """The database could not be reached or stayed locked too long (answered 503)."""


class VersionConflict(Exception):
    """Another writer changed the resource first (optimistic check failed)."""


class TransactionConflict(Exception):
    """A write of a multi-resource commit found another version than it planned on."""

    def __init__(self, index: int, key: str) -> None:
        super().__init__(key)
        self.index = index
        self.key = key


@dataclass(frozen=True)
class EngineInfo:
    """What the connected engine is, detected at start-up."""

    name: str  # "sqlite", "mongodb" or "ferretdb"
    version: str
    replica_set: bool = False
    transactions: bool = False


@dataclass(frozen=True)
class PlannedWrite:
    type_: str
    id_: str
    previous: int | None  # None: the resource does not exist yet
    text: str | None  # None: a deletion
    index: Mapping[str, Any] | None
    method: str


@dataclass(frozen=True)
class Current:
    """The current state of one resource: its version and whether it is deleted."""

    version: int
    deleted: bool


def history_key(type_: str, id_: str, version: int) -> str:
    """A version's key, the history's tie-breaker between versions of one instant."""
    return f"{type_}/{id_}/{version}"


class Repository(ABC):
    """Reads and writes resources. Keyword-only arguments throughout."""

    engine: EngineInfo
    records: Records
    locks: Locks
    concepts: Concepts  # code systems' concepts and stored code sets (terminology)

    # -- lifecycle --------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Create what is missing (schema, indexes) and settle writes a crash left."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise when the database cannot be reached (readiness)."""

    # -- reads --------------------------------------------------------------------------

    @abstractmethod
    async def current(self, *, type_: str, id_: str) -> StoredVersion | None:
        """The current version (a deletion included), or None when never written."""

    @abstractmethod
    async def version(self, *, type_: str, id_: str, version: int) -> StoredVersion | None: ...

    @abstractmethod
    async def types(self) -> list[str]:
        """The resource types that have stored resources (deleted ones included), sorted."""

    @abstractmethod
    async def peek(self, *, type_: str, id_: str) -> Current | None: ...

    async def exists(self, *, type_: str, id_: str) -> bool:
        found = await self.peek(type_=type_, id_=id_)
        return found is not None and not found.deleted

    @abstractmethod
    async def search(self, *, type_: str, query: Query, sort: Sequence[SortKey],
                     limit: int) -> list[str]:
        """Ids of the current resources matching ``query``, in ``sort`` order, at most
        ``limit``.

        The order every engine keeps: by each sort key in turn (``_id``, ``_lastUpdated``,
        or a parameter's one sortable value, ``so`` in ``search/extract.py``), then by id
        in the direction of the last key, so that the order is total. A resource without a
        value for a sorted parameter sorts before every value ascending and after every
        value descending (MongoDB's order for a missing field, SQL's NULLs first
        ascending); resources without a value are ordered among themselves by the next
        keys, then by id."""

    @abstractmethod
    async def count(self, *, type_: str, query: Query) -> int: ...

    @abstractmethod
    async def matches(self, *, type_: str, id_: str, query: Query) -> bool:
        """Whether the current, not deleted resource matches ``query``."""

    @abstractmethod
    async def fetch(self, *, type_: str, ids: Sequence[str],
                    where: Query | None = None) -> list[StoredVersion]:
        """The current, not deleted versions of ``ids`` (that match ``where``), in order."""

    @abstractmethod
    async def references(self, *, type_: str, ids: Sequence[str],
                         prefix: str = "") -> dict[str, list[str]]:
        """The stored reference keys (``param|Type/id``) of the given resources, starting
        with ``prefix``, per id."""

    @abstractmethod
    async def history(
        self,
        *,
        type_: str | None = None,
        id_: str | None = None,
        since: datetime | None = None,
        at: tuple[datetime, datetime] | None = None,
        count: int,
        cursor: HistoryCursor | None = None,
        exclude_types: frozenset[str] = frozenset(),
    ) -> HistoryPage:
        """A page of versions, newest first, with keyset paging on (ts, key).

        Every page of one listing answers as of the first page's instant, so
        writes made while a client pages neither shift pages nor change the total.
        ``at`` lists the versions current at some moment of [low, high). Engines page
        through ``storage/history.py`` (``HistoryPlan``) and only translate its question.
        """

    # -- writes -------------------------------------------------------------------------

    async def check_target(self, *, type_: str, id_: str, method: str) -> None:
        """Refuse, before any work, a PUT or DELETE of ``type_/id_`` the caller may not aim
        at (a scoped repository: NotFound, the answer for an id that does not exist). The
        base repository is the server's own: it may aim anywhere."""
        return None

    @abstractmethod
    async def write(self, *, type_: str, id_: str, previous: int | None, text: str | None,
                    index: Mapping[str, Any] | None, method: str,
                    ts: datetime | None = None) -> StoredVersion:
        """Write the next version after ``previous`` (None: the resource is new).

        ``text`` None writes a deletion. Raises VersionConflict when another
        writer got there first; nothing of this write is then visible.
        """

    @abstractmethod
    async def commit_transaction(self, writes: list[PlannedWrite], *, ts: datetime,
                                 side_effects: Sequence[PlannedWrite] = ()
                                 ) -> list[StoredVersion]:
        """Commit ``writes`` and the server's own ``side_effects`` of them all or nothing
        (a scoped repository checks only ``writes`` against the caller's token). Raises
        TransactionConflict naming the first write whose ``previous`` did not hold."""

    @abstractmethod
    async def append_new(self, *, type_: str,
                         items: Sequence[tuple[str, str, Mapping[str, Any]]],
                         ts: datetime) -> int:
        """Store resources that nobody will ever change (the server's AuditEvents):
        ``(id, text, index)`` each, as version 1, in as few round trips as the engine
        allows. An id stored before is skipped (a replayed journal); returns how many
        were stored. Not all or nothing on every engine: callers replay what may be
        missing (the audit journal does). These are the server's own log, not changes:
        they add no event to the outbox."""

    # -- the outbox ---------------------------------------------------------------------

    @abstractmethod
    async def events(self, *, after: int, limit: int) -> list[ChangeEvent]:
        """Committed changes numbered above ``after``, in number order, at most ``limit``.

        Every write and every write of a commit (side effects included) appends its event
        in the same all-or-nothing commit. The list stops before the first event whose
        commit is not settled yet (another writer's, in flight), so a reader that resumes
        after the last number it handled never skips an event that commits later."""

    @abstractmethod
    async def last_event(self) -> int:
        """The highest event number handed out so far (0 before the first)."""

    @abstractmethod
    async def purge_events(self, *, before: datetime, upto: int) -> int:
        """Delete the events committed before ``before`` and numbered at most ``upto``
        (what every consumer has passed); the highest number is always kept, so that
        numbers are never handed out twice. How many were deleted."""
