"""A consumer that cannot deliver shows as a lag that grows, in events and in seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from prometheus_client import REGISTRY

from fhir_server.events.consumer import Consumer
from fhir_server.events.event import Event
from fhir_server.events.runner import Runner
from fhir_server.storage.repository import Repository
from tests.support.store import Store


class Gate(Consumer):
    """Refuses every batch while ``open`` is false (a peer that is down)."""

    def __init__(self) -> None:
        self.name = "gate"
        self.open = False
        self.done: list[int] = []

    async def deliver(self, events: Sequence[Event]) -> int:
        if not self.open:
            raise ConnectionError("the peer is down")
        self.done.extend(e.number for e in events)
        return len(events)


def lag() -> tuple[float | None, float | None]:
    return (REGISTRY.get_sample_value("fhir_events_consumer_lag_events", {"consumer": "gate"}),
            REGISTRY.get_sample_value("fhir_events_consumer_lag_seconds", {"consumer": "gate"}))


async def _until(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.01)


async def test_the_lag_grows_while_a_consumer_fails_and_falls_to_zero_once_it_delivers(
        repo: Repository, store: Store) -> None:
    gate = Gate()
    settings = store.settings().model_copy(update={"fhir_events_poll_seconds": 0.01})
    runner = Runner(repo=repo, settings=settings, consumers=[gate])
    runner.start()
    try:
        await _until(lambda: lag() == (0.0, 0.0))  # holds the lease, nothing waits
        written = time.time()  # before the first write: its event is the oldest waiting
        for n in range(3):
            await repo.write(type_="Basic", id_=f"lag{n}", previous=None, index={},
                             text=f'{{"resourceType":"Basic","id":"lag{n}"}}', method="POST")
        await _until(lambda: lag()[0] == 3.0)
        # Each attempt looks again: the age of the oldest event waiting grows.
        await _until(lambda: (lag()[1] or 0.0) >= 0.5)
        events, seconds = lag()
        assert events == 3.0
        assert seconds is not None and seconds <= time.time() - written + 0.01
        gate.open = True
        await _until(lambda: len(gate.done) == 3 and lag() == (0.0, 0.0))
    finally:
        await runner.stop()
