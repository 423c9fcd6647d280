"""A time bound on concept-store queries: the code inside ``within(seconds)`` has until then.

The terminology layer bounds each expansion (``$expand``, ``$validate-code``, the code set
of a search's ``:in``) with ``within``; the concept store's queries made inside it end by
the deadline or raise ``QueryTimeout``, having written nothing:

* SQLite: a progress handler interrupts the statement once the deadline has passed (an
  interrupted write transaction is rolled back);
* MongoDB: the operation runs under ``pymongo.timeout`` (the server is sent ``maxTimeMS``
  and the client stops waiting at the deadline); FerretDB's in-memory copies check the
  deadline as they go.

The deadline is a context variable, as the leases of ``fence.py`` are: it follows the
task that set it and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class QueryTimeout(Exception):
    """A query was stopped at its deadline; it changed nothing."""


_DEADLINE: ContextVar[float | None] = ContextVar("fhir_query_deadline", default=None)


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Queries inside end within ``seconds`` from now (or by an earlier deadline already
    set around this one)."""
    mine = time.monotonic() + seconds
    outer = _DEADLINE.get()
    token = _DEADLINE.set(mine if outer is None else min(mine, outer))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@contextmanager
def paused() -> Iterator[None]:
    """Time spent inside does not count against the deadline: work done once for every
    later query (FerretDB's in-memory copy of a generation), not for this one."""
    started = time.monotonic()
    try:
        yield
    finally:
        deadline = _DEADLINE.get()
        if deadline is not None:
            _DEADLINE.set(deadline + time.monotonic() - started)


def current() -> float | None:
    """The deadline (``time.monotonic()`` seconds), None without one."""
    return _DEADLINE.get()


def remaining() -> float | None:
    """Seconds left, None without a deadline; ``QueryTimeout`` when none are left."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise QueryTimeout
    return left


def check() -> None:
    """``QueryTimeout`` once the deadline has passed."""
    remaining()
