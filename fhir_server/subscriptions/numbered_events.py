"""A Subscription's events by its own event numbers (``numbering.py``), for ``$events``.

From the Subscription's saved cursor, ``after`` and ``count`` (``state.py``): numbers up to
``count`` were notified and are looked up in its number log, then read from the outbox by
their outbox numbers (no judging again: what was notified is served, though its criteria
or its owner's access changed since); numbers above ``count`` are the events after
``after`` that match, judged now as the worker will judge them (``judge.py``), so they get
the numbers their notifications will carry. An event the outbox no longer keeps
(``FHIR_EVENTS_RETENTION``) is left out; its number is not given to another.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from fhir_server.core.config import Settings
from fhir_server.storage.model import ChangeEvent
from fhir_server.storage.repository import Repository
from fhir_server.subscriptions.active import Active
from fhir_server.subscriptions.judge import Judge
from fhir_server.subscriptions.notification import Pending
from fhir_server.subscriptions.numbering import logged

PAGE = 500
AHEAD = 50  # outbox numbers read together when they lie close


async def numbered(repo: Repository, settings: Settings, active: Active, *, after: int,
                   count: int, since: int, until: int | None
                   ) -> AsyncGenerator[tuple[int, Pending]]:
    """(number, event) for the numbers ``since``..``until`` (None: up to the last event
    committed), in order; ``after``, ``count``: the saved cursor."""
    top = count if until is None else min(until, count)
    first = since
    while first <= top:
        last = min(top, first + PAGE - 1)
        pairs = await logged(repo.records, active.id_, first=first, last=last)
        found = await _outbox(repo, [outbox for _, outbox in pairs])
        for number, outbox in pairs:
            kept = found.get(outbox)
            if kept is not None:
                yield number, Pending(number=kept.number, type_=kept.type_, id_=kept.id_,
                                      version=kept.version, at=kept.at, trace=kept.trace)
        first = last + 1
    judge = Judge(repo, settings)
    number, end = count, await repo.last_event()
    while after < end:
        changes = await repo.events(after=after, limit=PAGE)
        if not changes:
            return
        for change in changes:
            if change.number > end:
                return
            after = change.number
            pending = await judge.pending(active, change)
            if pending is None:
                continue
            number += 1
            if until is not None and number > until:
                return
            if number >= since:
                yield number, pending


async def _outbox(repo: Repository, numbers: Sequence[int]) -> dict[int, ChangeEvent]:
    """The outbox's events of these (rising) numbers that it still keeps: a page at a
    time where they lie close, one by one where they are far apart."""
    wanted = set(numbers)
    found: dict[int, ChangeEvent] = {}
    i = 0
    while i < len(numbers):
        ahead = numbers[i:i + AHEAD]
        span = ahead[-1] - ahead[0] + 1
        page = await repo.events(after=numbers[i] - 1,
                                 limit=span if span <= 4 * len(ahead) else 1)
        if not page:
            break
        found.update((c.number, c) for c in page if c.number in wanted)
        while i < len(numbers) and numbers[i] <= page[-1].number:
            i += 1
    return found
