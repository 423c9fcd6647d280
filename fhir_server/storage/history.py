"""History listings, paged the same way on every engine.

A listing (``Repository.history``) is newest first, in the order (instant, key)
descending, where the key is ``Type/id/version`` (``history_key``). Pages are cut by
keyset: a page ends at a ``HistoryCursor`` naming the first page's instant (``as_of``,
so that writes made while a client pages neither shift pages nor change the total) and
the last (instant, key) served. ``HistoryPlan`` is one page's question, which each
engine translates into its own dialect (SQL over ``history``, a MongoDB filter over the
``history`` collection); ``HistoryPlan.page`` cuts the answer into the page and the
next cursor. Only the translation differs between engines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fhir_server.storage.model import StoredVersion, now_ms


@dataclass(frozen=True)
class HistoryCursor:
    """Where a history page ends: the snapshot instant and the last (ts, key) served."""

    as_of: datetime
    ts: datetime | None = None
    key: str | None = None


@dataclass(frozen=True)
class HistoryPage:
    versions: list[StoredVersion]
    total: int | None  # None when not known (a filtered listing not read to its end)
    next_cursor: HistoryCursor | None


@dataclass(frozen=True)
class HistoryPlan:
    """One page of a listing: the versions (``type_``, ``id_``: of one type or resource;
    ``excluded``: not of these types) written at or before ``as_of`` (and at or after
    ``since``; ``at``: current at some moment of [low, high), i.e. written before high and
    not replaced before low), those after ``after`` (instant, key) in the listing's
    order, ``count`` of them."""

    as_of: datetime
    count: int
    type_: str | None = None
    id_: str | None = None
    since: datetime | None = None
    at: tuple[datetime, datetime] | None = None
    excluded: tuple[str, ...] = ()
    after: tuple[datetime, str] | None = None

    @classmethod
    def of(cls, *, type_: str | None, id_: str | None, since: datetime | None,
           at: tuple[datetime, datetime] | None, count: int, cursor: HistoryCursor | None,
           exclude_types: frozenset[str]) -> HistoryPlan:
        """The plan of ``Repository.history``'s arguments (no cursor: the first page, as of
        now)."""
        cursor = cursor or HistoryCursor(as_of=now_ms())
        after = (cursor.ts, cursor.key or "") if cursor.ts is not None else None
        excluded = tuple(sorted(exclude_types)) if type_ is None else ()
        return cls(as_of=cursor.as_of, count=count, type_=type_, id_=id_, since=since, at=at,
                   excluded=excluded, after=after)

    @property
    def limit(self) -> int:
        """How many versions to read: one more than the page, to know whether more follow."""
        return self.count + 1

    def page(self, *, total: int, rows: Sequence[tuple[StoredVersion, str]]) -> HistoryPage:
        """The page of the versions read (at most ``limit``, in the listing's order, each
        with its key) and the listing's total."""
        more = len(rows) > self.count
        kept = rows[:self.count]
        nxt = None
        if more and kept:
            last, last_key = kept[-1]
            nxt = HistoryCursor(as_of=self.as_of, ts=last.last_updated, key=last_key)
        return HistoryPage(versions=[v for v, _ in kept], total=total, next_cursor=nxt)
