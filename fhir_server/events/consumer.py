"""What reacts to change events: a named consumer with a durable cursor (``runner.py``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

from fhir_server.events.event import Event


class Consumer(ABC):
    """One reader of the outbox. Its ``name`` names its cursor and its lease: one process
    at a time runs a consumer of a given name, among every worker and replica.

    Delivery is at least once: a consumer that crashes after acting on events but before
    its cursor moved gets them again, so it is idempotent by the event's number."""

    name: str
    batch: int = 100  # events handed to ``deliver`` at most at once
    # Where a consumer with no cursor yet starts: at the next event committed ("now"), or
    # at the oldest event the outbox still keeps ("beginning").
    start: Literal["now", "beginning"] = "now"

    @abstractmethod
    async def deliver(self, events: Sequence[Event]) -> int:
        """Act on ``events`` (in number order); how many of them, from the first, are done.

        The cursor moves past those. Fewer than all (or an exception: none done) means
        the rest are handed again, from the first not done, after a pause that grows with
        each failure in a row."""

    async def resume(self, after: int) -> None:
        """Called when this process takes the consumer's lease, with its cursor, before the
        first events are handed: a consumer with work of its own (the Subscriptions' queues)
        picks it up here."""
        return None

    async def suspend(self) -> None:
        """Called when this process stops serving the consumer (the lease lost, a failure,
        the runner stopping): stop what ``resume`` started; another process may go on."""
        return None

    async def close(self) -> None:
        """Release what the consumer holds (connections); called once when it stops."""
        return None
