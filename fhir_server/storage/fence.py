"""Fencing: a write made under a lease commits only while its writer still holds the lease.

``Locks.hold`` (``storage/locks.py``) records the leases it holds in a context variable for
the code inside its ``async with``. Every write that code makes checks them where it
commits:

* SQLite: inside the write's own transaction (``Database.write``), so the check and the
  write are one atomic step; a taker that replaced the lease is serialized before or after
  it, never between.
* MongoDB (no multi-document transactions here): just before the write's commit point, a
  conditional update of each lease on its owner that also renews it. The commit follows
  within milliseconds with the lease fresh for a whole lease period, so only a holder
  paused for longer than a lease between the check and its commit can slip through.

A holder that lost its lease gets ``LeaseLost`` (a kind of ``LockBusy``: the work was not
done, try again), and its write is not made. The lease machinery's own records calls run
``unfenced``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

LOCKS = "locks"  # records kind of the leases: {_id: name, owner, expires}


class LockBusy(Exception):
    """A lease stayed taken for longer than the caller would wait."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class LeaseLost(LockBusy):
    """A write was refused: its writer no longer holds a lease it depends on (it stopped
    renewing for longer than the lease, and another holder took it over)."""


@dataclass(frozen=True)
class Fence:
    name: str  # the lease
    owner: str  # this holding's token: a new one each time the lease is taken
    lease: float  # seconds; a MongoDB check renews the lease for this long


_HELD: ContextVar[tuple[Fence, ...]] = ContextVar("fhir_leases_held", default=())


def held() -> tuple[Fence, ...]:
    """The leases the current code runs under (outermost first)."""
    return _HELD.get()


@contextmanager
def holding(fences: Iterable[Fence]) -> Iterator[None]:
    token = _HELD.set(_HELD.get() + tuple(fences))
    try:
        yield
    finally:
        _HELD.reset(token)


@contextmanager
def unfenced() -> Iterator[None]:
    """For the lease machinery itself: taking, renewing and releasing are never fenced."""
    token = _HELD.set(())
    try:
        yield
    finally:
        _HELD.reset(token)
