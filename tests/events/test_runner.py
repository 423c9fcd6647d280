"""The runner feeds consumers the outbox in order, at least once, one process at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from fhir_server.core.config import Settings
from fhir_server.events.consumer import Consumer
from fhir_server.events.event import Event
from fhir_server.events.runner import CURSORS, Runner, sweep
from fhir_server.storage.open import open_repository
from fhir_server.storage.repository import Repository
from tests.support.store import Store


class Recorder(Consumer):
    """A consumer that notes what it was handed; it refuses the first ``refuse`` calls and
    then does ``take`` events of each batch at most."""

    def __init__(self, name: str, *, refuse: int = 0, take: int | None = None,
                 tag: str = "", seen: list[tuple[str, Event]] | None = None) -> None:
        self.name = name
        self.refuse = refuse
        self.take = take
        self.tag = tag
        self.calls: list[list[int]] = []
        self.seen: list[tuple[str, Event]] = [] if seen is None else seen

    async def deliver(self, events: Sequence[Event]) -> int:
        self.calls.append([e.number for e in events])
        if self.refuse:
            self.refuse -= 1
            raise ConnectionError("the peer is down")
        done = list(events)[: self.take or len(events)]
        self.seen.extend((self.tag, e) for e in done)
        return len(done)


def _settings(store: Store) -> Settings:
    return store.settings().model_copy(update={"fhir_events_poll_seconds": 0.01,
                                               "fhir_events_lease_seconds": 2.0})


async def _write(repo: Repository, type_: str, id_: str, body: str,
                 previous: int | None = None) -> None:
    await repo.write(type_=type_, id_=id_, previous=previous,
                     text=f'{{"resourceType":"{type_}","id":"{id_}",{body}}}', index={},
                     method="PUT" if previous else "POST")


async def _until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("not delivered in time")
        await asyncio.sleep(0.01)


async def _until_cursor(repo: Repository, name: str, number: int) -> None:
    """The cursor is written once ``deliver`` has returned: wait for it too."""
    deadline = time.monotonic() + 10
    while ((await repo.records.get(kind=CURSORS, id_=name)) or {}).get("after") != number:
        if time.monotonic() > deadline:
            raise AssertionError(f"the cursor of {name} did not reach {number}")
        await asyncio.sleep(0.01)


async def test_a_consumer_gets_what_commits_after_it_starts_in_order_with_topics(
        repo: Repository, store: Store) -> None:
    await _write(repo, "Patient", "before", '"active":true')
    recorder = Recorder("recorder")
    runner = Runner(repo=repo, settings=_settings(store), consumers=[recorder])
    runner.start()
    try:
        await asyncio.sleep(0.2)  # the cursor is placed at the last event committed
        await _write(repo, "Appointment", "a1", '"status":"booked","start":"2026-12-07T09:00:00Z"')
        await _write(repo, "Appointment", "a1", '"status":"cancelled"', previous=1)
        await _write(repo, "Patient", "after", '"active":true')
        await _until(lambda: len(recorder.seen) >= 3)
        await _until_cursor(repo, "recorder", recorder.seen[-1][1].number)
    finally:
        await runner.stop()
    got = [(e.reference, e.version, e.action, e.topics) for _, e in recorder.seen]
    assert got == [("Appointment/a1", 1, "create", ("appointment-booked",)),
                   ("Appointment/a1", 2, "update", ("appointment-cancelled",)),
                   ("Patient/after", 1, "create", ())]
    numbers = [e.number for _, e in recorder.seen]
    assert numbers == sorted(numbers)
    cursor = await repo.records.get(kind=CURSORS, id_="recorder")
    assert cursor is not None and cursor["after"] == numbers[-1]


async def test_a_failed_delivery_comes_again_and_the_cursor_moves_only_past_what_is_done(
        repo: Repository, store: Store) -> None:
    mark = await repo.last_event()
    for n in range(3):
        await _write(repo, "Basic", f"b{n}", '"code":{"text":"x"}')
    numbers = [e.number for e in await repo.events(after=mark, limit=10)]
    recorder = Recorder("flaky", refuse=1, take=2)
    recorder.start = "beginning"  # the three are waiting when it starts: one batch
    runner = Runner(repo=repo, settings=_settings(store), consumers=[recorder])
    runner.start()
    try:
        await _until(lambda: len(recorder.seen) >= 3)
        await _until_cursor(repo, "flaky", numbers[-1])
    finally:
        await runner.stop()
    # Refused once: the first event was handed again; two done: the third handed again.
    assert recorder.calls[:3] == [numbers] * 2 + [numbers[2:]]
    assert [e.number for _, e in recorder.seen] == numbers
    cursor = await repo.records.get(kind=CURSORS, id_="flaky")
    assert cursor is not None and cursor["after"] == numbers[-1]


async def test_one_process_delivers_at_a_time_and_another_takes_over_where_it_stopped(
        repo: Repository, store: Store) -> None:
    """Two runners, each on its own connection as two workers are: the consumer of one name
    runs in one of them; when that one stops, the other goes on from the cursor."""
    other = await open_repository(store.settings())
    seen: list[tuple[str, Event]] = []
    first = Runner(repo=repo, settings=_settings(store),
                   consumers=[Recorder("shared", tag="first", seen=seen)])
    second = Runner(repo=other, settings=_settings(store),
                    consumers=[Recorder("shared", tag="second", seen=seen)])
    first.start()
    await asyncio.sleep(0.3)  # the first takes the lease
    second.start()
    try:
        for n in range(5):
            await _write(repo, "Basic", f"early{n}", '"code":{"text":"x"}')
        await _until(lambda: len(seen) >= 5)
        await first.stop()
        for n in range(5):
            await _write(other, "Basic", f"late{n}", '"code":{"text":"x"}')
        await _until(lambda: len(seen) >= 10)
    finally:
        await first.stop()
        await second.stop()
        await other.close()
    assert [tag for tag, _ in seen] == ["first"] * 5 + ["second"] * 5
    numbers = [e.number for _, e in seen]
    assert numbers == sorted(set(numbers))  # each once, in order
    assert [e.id_ for _, e in seen] == [f"early{n}" for n in range(5)] + [
        f"late{n}" for n in range(5)]


async def test_the_sweep_keeps_what_an_active_consumer_has_not_passed(
        repo: Repository) -> None:
    for n in range(4):
        await _write(repo, "Basic", f"s{n}", '"code":{"text":"x"}')
    numbers = [e.number for e in await repo.events(after=0, limit=100)]
    await asyncio.sleep(0.3)  # the events are older than the retention below
    now = time.time()
    await repo.records.insert(kind=CURSORS, doc={"_id": "slow", "after": numbers[1],
                                                 "seen": now})
    await repo.records.insert(kind=CURSORS, doc={"_id": "gone", "after": 0,
                                                 "seen": now - 3600})  # inactive
    assert await sweep(repo, retention=0.2) == 2
    assert [e.number for e in await repo.events(after=0, limit=100)] == numbers[2:]
    # A consumer that ran within the retention holds everything after its cursor.
    assert await sweep(repo, retention=7200) == 0
