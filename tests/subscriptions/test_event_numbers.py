"""A topic-based Subscription numbers its own events 1, 2, 3… without gaps (the Backport
IG's ``event-number``): in its notifications, on a retry, across a restart that lost the
last cursor save, and in ``$events``."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from fhir_server.main import create_app
from fhir_server.search.extract import index_resource
from fhir_server.storage.open import open_repository
from fhir_server.subscriptions.state import save_cursor
from tests.subscriptions.helpers import (
    FAST,
    observation,
    parameters,
    subscribe_topic,
    until,
)
from tests.subscriptions.receiver import Receiver, receiver
from tests.support.store import Store, fhir_client, make_settings, mint

# A receiver away is tried again and again (not put in error) while a test watches.
KEEP_TRYING = {**FAST, "fhir_subscription_max_attempts": 100, "fhir_subscription_backoff": 0.05}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(KEEP_TRYING)


def delivered(hook: Receiver) -> list[tuple[int, str]]:
    """(event-number, focus) of every event notified and answered 2xx, in order."""
    out = []
    for got in hook.delivered():
        status, events = parameters(orjson.loads(got.body))
        if status["type"] == "event-notification":
            out += [(int(e["event-number"]), e["focus"]) for e in events]
    return out


def focus(patient: dict[str, Any]) -> str:
    return f"Patient/{patient['id']}/_history/{patient['meta']['versionId']}"


async def write_patients(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """Patients (on the topic), each followed by an Observation (not on it)."""
    patients = []
    for _ in range(count):
        patients.append((await client.post("Patient", json={"resourceType": "Patient"})).json())
        assert (await client.post("Observation", json=observation("final"))).status_code == 201
    return patients


async def events(client: httpx.AsyncClient, id_: str, **params: str) -> list[tuple[int, str]]:
    answer = await client.get(f"Subscription/{id_}/$events", params=params)
    assert answer.status_code == 200, answer.text
    return [(int(e["event-number"]), e["focus"]) for e in parameters(answer.json())[1]]


async def test_numbers_run_from_one_without_gaps_and_events_reads_them(
        client: httpx.AsyncClient) -> None:
    with receiver() as hook:
        id_ = await subscribe_topic(client, "Patient", hook.url)
        patients = await write_patients(client, 5)
        await until(lambda: len(delivered(hook)) >= len(patients))
        expected = [(n, focus(p)) for n, p in enumerate(patients, start=1)]
        assert delivered(hook) == expected
        # The header is the notification's last event number.
        for got in hook.delivered()[1:]:
            last = parameters(orjson.loads(got.body))[1][-1]["event-number"]
            assert got.headers["x-fhir-event-number"] == last
        # $events reads the same numbers, exactly the window asked for.
        assert await events(client, id_, eventsSinceNumber="2",
                            eventsUntilNumber="4") == expected[1:4]
        assert await events(client, id_, eventsSinceNumber="1") == expected
        # A receiver away: every attempt carries the next number, and $events serves the
        # event not yet delivered with that same number.
        hook.status = 503
        [late] = await write_patients(client, 1)
        tried = len(hook.got)
        await hook.until(tried + 2)
        attempts = [parameters(orjson.loads(g.body))[1] for g in hook.got[tried:]]
        assert {e["event-number"] for batch in attempts for e in batch} == {"6"}
        assert await events(client, id_) == [(6, focus(late))]
        hook.status = 200
        await until(lambda: len(delivered(hook)) > len(patients))
    assert delivered(hook) == [*expected, (6, focus(late))]


async def test_a_restart_that_lost_the_last_save_sends_again_with_the_same_numbers(
        store: Store) -> None:
    settings = make_settings(store, **KEEP_TRYING)
    with receiver() as hook:
        first = create_app(settings)
        async with (first.router.lifespan_context(first),
                    fhir_client(first, await mint(first)) as client):
            id_ = await subscribe_topic(client, "Patient", hook.url)
            patients = await write_patients(client, 3)
            await until(lambda: len(delivered(hook)) >= len(patients))
        before = delivered(hook)
        # As a crash leaves it: the cursor saved after the first notification only, and
        # changes committed while no server runs (a Patient, and an Observation).
        repo = await open_repository(settings)
        try:
            outbox = await repo.events(after=0, limit=1000)
            [first_event] = [e.number for e in outbox
                             if (e.type_, e.id_) == ("Patient", patients[0]["id"])]
            await save_cursor(repo.records, id_, first_event, count=1)
            for type_, body in (("Patient", {"resourceType": "Patient"}),
                                ("Observation", observation("final"))):
                written = {**body, "id": f"down-{type_.lower()}"}
                await repo.write(type_=type_, id_=written["id"], previous=None,
                                 text=orjson.dumps(written).decode(),
                                 index=index_resource(written), method="POST")
        finally:
            await repo.close()
        second = create_app(settings)
        async with (second.router.lifespan_context(second),
                    fhir_client(second, await mint(second)) as client):
            [after] = await write_patients(client, 1)
            await until(lambda: len(delivered(hook)) >= len(before) + 4)
            again = delivered(hook)[len(before):]
            read = await events(client, id_, eventsSinceNumber="1", eventsUntilNumber="5")
    expected = [(1, focus(patients[0])), (2, focus(patients[1])), (3, focus(patients[2])),
                (4, "Patient/down-patient/_history/1"), (5, focus(after))]
    assert before == expected[:3]
    assert again == expected[1:]  # 2 and 3 sent again, with their numbers
    assert read == expected
