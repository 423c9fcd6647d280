"""Per-type write rules: checks and side effects that generic code must not know about.

A rule for one resource type lives in ``resources/<type>.py`` and registers
itself here. For every create, update, patch or delete of that type (single
interactions, batch entries and transaction entries alike) the write path:

1. asks every rule which lease names the change depends on (``lease_names``),
2. holds those leases (``storage/locks.py``) across every process,
3. runs ``check``, which may refuse the change (raise a FhirError) and may return
   side writes (full resources of other types to store),
4. commits the change and its side writes together, all or nothing, also across a
   crash (``Repository.commit_transaction``: one SQLite transaction, or the staged
   protocol of ``storage/mongo/transactions.py``), and releases the leases.

So a check-then-write rule cannot race another process, and a side effect happens
exactly when the change happens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.core.config import Settings
from fhir_server.core.errors import Conflict
from fhir_server.storage.locks import LockBusy
from fhir_server.storage.repository import Repository


@dataclass(frozen=True)
class Change:
    """One resource about to be written: its current content and the new one (None: deleted)."""

    type_: str
    id_: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class SideWrite:
    """A resource a rule writes along with the change (created or a new version)."""

    type_: str
    id_: str
    resource: dict[str, Any]


async def _sees_all(type_: str, id_: str) -> bool:
    return True


@dataclass
class RuleContext:
    repo: Repository
    settings: Settings
    # Other changes committed together with this one (a transaction's other entries).
    siblings: Sequence[Change] = field(default_factory=tuple)
    # Whether the caller may see a stored resource: a rule judges the whole database, but
    # its messages name only what the caller may see (a patient, not another's booking).
    sees: Callable[[str, str], Awaitable[bool]] = _sees_all
    # The caller's principal (auth/principal.py; None: authorization off, or the server's
    # own change): a rule that records who asked for something (a Subscription) reads it.
    principal: Any = None


class WriteRule(Protocol):
    def lease_names(self, change: Change) -> list[str]: ...

    async def check(self, ctx: RuleContext, change: Change) -> list[SideWrite]: ...


_RULES: dict[str, list[WriteRule]] = {}


def register(type_: str, rule: WriteRule) -> None:
    _RULES.setdefault(type_, []).append(rule)


def rules_for(type_: str) -> list[WriteRule]:
    return _RULES.get(type_, [])


def has_rules(type_: str) -> bool:
    return type_ in _RULES


CommitObserver = Callable[[Sequence[Change], Sequence[SideWrite]], None]
_OBSERVERS: list[CommitObserver] = []


def on_commit(observer: CommitObserver) -> None:
    """Call ``observer(changes, side_writes)`` after rule-checked changes are committed
    (the business counters)."""
    if observer not in _OBSERVERS:
        _OBSERVERS.append(observer)


@asynccontextmanager
async def applying(repo: Repository, settings: Settings,
                   changes: Sequence[Change]) -> AsyncIterator[list[SideWrite]]:
    """Hold the changes' leases, run their rules and yield their side writes.

    The caller commits the changes and the side writes inside the ``async with``.
    """
    names = [name for c in changes for rule in rules_for(c.type_) for name in rule.lease_names(c)]
    # Rules judge the whole database, not what the caller's token may see: the caller's
    # write itself is checked where it is committed, its side effects are the server's.
    whole = getattr(repo, "base", repo)
    readable = getattr(repo, "readable", None)
    principal = getattr(getattr(repo, "access", None), "principal", None)

    async def sees(type_: str, id_: str) -> bool:
        return readable is None or bool(await readable(type_=type_, id_=id_))

    try:
        async with repo.locks.hold(names):
            side: list[SideWrite] = []
            for change in changes:
                ctx = RuleContext(repo=whole, settings=settings, sees=sees, principal=principal,
                                  siblings=[c for c in changes if c is not change])
                for rule in rules_for(change.type_):
                    side.extend(await rule.check(ctx, change))
            yield side
            for observer in _OBSERVERS:  # the caller committed inside the ``async with``
                observer(changes, side)
    except LockBusy:
        raise Conflict("Another request is changing the same schedule; try again") from None
