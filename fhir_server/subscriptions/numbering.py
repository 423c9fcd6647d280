"""Each Subscription's own event numbers, as the R4 Subscriptions Backport IG (STU 1.1)
wants a ``notification-event``'s ``event-number``: "the sequential number of this event in
this subscription context". They run 1, 2, 3… in the order the Subscription's events are
notified, without gaps, and a repeat (a retry, a re-send after a crash) carries the same
number; ``events-since-subscription-start`` is the last one notified.

The rule: a Subscription's durable cursor (``state.py``) holds ``after`` (the outbox event
up to which everything was notified or judged not to match) and ``count`` (how many of
those were notified), written in one record at each save. The events notified so far are
numbered 1..``count``; the ones that match after ``after`` are ``count``\\+1, ``count``\\+2…
in outbox order. A worker (re)started from its cursor numbers its notifications so, and
``$events`` numbers what has not been notified yet the same way (it judges the events
after ``after`` as the worker does). A crash re-sends at most ``SAVE_EVERY`` worth of
notifications from the saved cursor (``worker.py``): they get the numbers they had.

For what has been notified, this log maps the numbers back to outbox events, so that
``$events`` can serve ``eventsSinceNumber``..``eventsUntilNumber`` without judging
anything again: records of kind ``subscription-event-numbers`` with id ``<subscription
id>:<block>``, each holding the outbox numbers of ``BLOCK`` consecutive numbers (block
``b`` holds ``b*BLOCK+1``…). A worker keeps the open block in memory and writes what it
added at each (throttled) save, before the cursor, so the saved ``count`` never counts
what the log lacks; readers use the log up to the saved ``count`` only (beyond it: a save
a crash cut short, written again from the cursor). Each block carries ``exp``: the outbox
retention after its last write, by when the events it names are purged too; the consumer
sweeps expired blocks, and a Subscription's blocks go with its cursor (``off``, deleted).
A Subscription counted before this log was kept goes on from its count; its earlier
numbers map to no event (``UNKNOWN``), and ``$events`` leaves them out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fhir_server.storage.records import Records

KIND = "subscription-event-numbers"
BLOCK = 1000  # numbers per record: at most some 10 kB of JSON
UNKNOWN = 0  # the outbox number of an event notified before this log was kept


def _block_id(id_: str, block: int) -> str:
    return f"{id_}:{block}"


class NumberLog:
    """One Subscription's log as its worker writes it: the open block in memory."""

    def __init__(self, records: Records, id_: str, *, count: int, numbers: list[int],
                 retention: float) -> None:
        self.records, self.id_, self.retention = records, id_, retention
        self.block = count // BLOCK  # the open block: numbers block*BLOCK+1 …
        self.numbers = numbers  # its outbox numbers, as far as notified
        self.full: list[tuple[int, list[int]]] = []  # filled blocks not yet written
        self.unsaved = False  # the open block changed since it was written

    @classmethod
    async def load(cls, records: Records, id_: str, *, count: int,
                   retention: float) -> NumberLog:
        """The log of a Subscription that has been notified of ``count`` events (its saved
        cursor's): the open block as saved, less what lies beyond ``count``."""
        block = count // BLOCK
        found = await records.get(kind=KIND, id_=_block_id(id_, block))
        kept = [] if found is None else [int(n) for n in found["numbers"]]
        kept = kept[:count - block * BLOCK]
        # A count without its log (notified before this log was kept): unknown, 0.
        kept += [UNKNOWN] * (count - block * BLOCK - len(kept))
        return cls(records, id_, count=count, numbers=kept, retention=retention)

    @property
    def count(self) -> int:
        return self.block * BLOCK + len(self.numbers)

    def notified(self, outbox: Sequence[int]) -> None:
        """The next events notified, by outbox number, in order (written at ``save``; in
        memory at once, so that a stop never finds the cursor ahead of the count)."""
        for number in outbox:
            if len(self.numbers) == BLOCK:
                self.full.append((self.block, self.numbers))
                self.block, self.numbers = self.block + 1, []
            self.numbers.append(number)
            self.unsaved = True

    async def save(self) -> None:
        """Write what was added since the last save (before the cursor is written)."""
        while self.full:
            await self._write(*self.full[0])
            self.full.pop(0)
        if self.unsaved:
            await self._write(self.block, self.numbers)
            self.unsaved = False

    async def _write(self, block: int, numbers: list[int]) -> None:
        fields = {"numbers": numbers, "exp": time.time() + self.retention}
        id_ = _block_id(self.id_, block)
        if not await self.records.set_fields(kind=KIND, id_=id_, fields=fields):
            await self.records.insert(kind=KIND, doc={"_id": id_, **fields})


async def logged(records: Records, id_: str, *, first: int,
                 last: int) -> list[tuple[int, int]]:
    """(number, outbox number) for the Subscription's numbers ``first``..``last`` that
    its log still keeps; the caller bounds ``last`` by the saved ``count``."""
    out: list[tuple[int, int]] = []
    now = time.time()
    for block in range(max(first - 1, 0) // BLOCK, max(last - 1, 0) // BLOCK + 1):
        found = await records.get(kind=KIND, id_=_block_id(id_, block))
        if found is None or float(found.get("exp", now)) < now:
            continue  # expired: its events are gone from the outbox too
        start = block * BLOCK + 1
        out += [(start + i, int(n)) for i, n in enumerate(found["numbers"])
                if first <= start + i <= last and int(n) != UNKNOWN]
    return out


async def forget_numbers(records: Records, id_: str, *, count: int) -> None:
    """Drop the log of a Subscription that had been notified of ``count`` events."""
    for block in range(count // BLOCK + 1):
        await records.delete(kind=KIND, id_=_block_id(id_, block))


async def sweep_numbers(records: Records) -> int:
    """Drop the expired blocks of every Subscription; how many."""
    return await records.purge(kind=KIND, before=time.time())
