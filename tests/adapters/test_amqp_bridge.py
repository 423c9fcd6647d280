"""The RabbitMQ bridge against a real broker: every change event, in number order, with its
routing keys, message id and body; a broker that is down holds nothing up and loses nothing."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from fhir_server.events.runner import CURSORS
from fhir_server.storage.model import ChangeEvent, instant
from tests import factories
from tests.support.rabbitmq import Broker, bind_queue, bridge_cursor, first_of_each, receive

pytestmark = [pytest.mark.process]


@pytest.fixture
def exchange() -> str:
    return f"fhir.test.{uuid.uuid4().hex[:8]}"  # one per test: the broker is the run's


@pytest.fixture
def payload() -> str:
    return "event"


@pytest.fixture
def settings_overrides(rabbitmq: Broker, exchange: str, payload: str) -> dict[str, object]:
    return {"fhir_amqp_url": rabbitmq.url, "fhir_amqp_exchange": exchange,
            "fhir_amqp_payload": payload, "fhir_events_poll_seconds": 0.01}


async def write(client: httpx.AsyncClient, method: str, url: str,
                body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = await client.request(method, url, json=body)
    assert answer.status_code in (200, 201), answer.text
    return answer.json() if answer.content else {}


def expected(change: ChangeEvent, topics: tuple[str, ...]) -> dict[str, Any]:
    """The message body of an outbox event, the test's writes giving its topics."""
    return {"number": change.number, "type": change.type_, "id": change.id_,
            "versionId": str(change.version), "action": change.action, "topics": list(topics),
            "at": instant(change.at)}


@pytest.mark.slow
async def test_each_event_is_published_in_order_with_its_keys_id_and_body(
        app: FastAPI, client: httpx.AsyncClient, rabbitmq: Broker, exchange: str) -> None:
    repo = app.state.repo
    everything = await bind_queue(rabbitmq.url, exchange, "#")
    journeys = await bind_queue(rabbitmq.url, exchange, "journey.#")
    encounters = await bind_queue(rabbitmq.url, exchange, "Encounter.*", "journey.#")
    mark = await bridge_cursor(repo)
    patient = await write(client, "POST", "Patient", factories.patient(family="Kowalski"))
    ref = f"Patient/{patient['id']}"
    visit = factories.encounter(ref) | {"status": "in-progress"}
    encounter = await write(client, "POST", "Encounter", visit)
    await write(client, "PUT", f"Encounter/{encounter['id']}",
                encounter | {"status": "finished"})
    await write(client, "DELETE", ref)

    changes = await repo.events(after=mark, limit=100)
    wrote = [("Patient", patient["id"], 1, "create", ()),
             ("Encounter", encounter["id"], 1, "create", ()),
             ("Encounter", encounter["id"], 2, "update", ("encounter-finished",)),
             ("Patient", patient["id"], 2, "delete", ())]
    assert [(c.type_, c.id_, c.version, c.action) for c in changes] == [w[:4] for w in wrote]
    bodies = [expected(c, w[4]) for c, w in zip(changes, wrote, strict=True)]
    ids = [str(c.number) for c in changes]

    got = first_of_each(await receive(rabbitmq.url, everything, ids=ids))
    assert [m.message_id for m in got] == ids  # in number order, nothing else
    assert [m.body for m in got] == bodies  # identifiers only: no name, no resource
    assert [m.routing_key for m in got] == [f"{w[0]}.{w[3]}" for w in wrote]
    assert [m.cc for m in got] == [tuple(f"journey.{t}" for t in w[4]) for w in wrote]
    assert {(m.content_type, m.persistent) for m in got} == {("application/json", True)}
    assert [m.type_ for m in got] == [m.routing_key for m in got]
    assert "Kowalski" not in str([m.body for m in got])

    # The journey key routes the message too (RabbitMQ's CC header), and a queue bound by
    # two of its keys holds one copy.
    finished = [ids[2]]
    assert [m.message_id for m in await receive(rabbitmq.url, journeys, ids=finished)] == finished
    assert [m.message_id for m in await receive(rabbitmq.url, encounters, ids=ids[1:3])
            ] == ids[1:3]


@pytest.mark.parametrize("payload", ["full"])
async def test_the_full_payload_carries_the_version_as_served_but_not_for_a_deletion(
        app: FastAPI, client: httpx.AsyncClient, rabbitmq: Broker, exchange: str) -> None:
    queue = await bind_queue(rabbitmq.url, exchange, "Patient.*")
    mark = await bridge_cursor(app.state.repo)
    created = await write(client, "POST", "Patient", factories.patient(family="Nowak"))
    pid = created["id"]
    updated = await write(client, "PUT", f"Patient/{pid}", created | {"gender": "female"})
    await write(client, "DELETE", f"Patient/{pid}")
    changes = await app.state.repo.events(after=mark, limit=100)
    got = first_of_each(await receive(rabbitmq.url, queue,
                                      ids=[str(c.number) for c in changes]))
    assert [m.body.get("resource") for m in got] == [created, updated, None]
    assert [m.body["action"] for m in got] == ["create", "update", "delete"]


@pytest.mark.slow
async def test_a_broker_that_is_down_holds_up_no_write_and_gets_the_backlog_in_order(
        app: FastAPI, client: httpx.AsyncClient, rabbitmq: Broker, exchange: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    repo = app.state.repo
    queue = await bind_queue(rabbitmq.url, exchange, "#")
    mark = await bridge_cursor(repo)
    before = [(await write(client, "POST", "Basic", {"resourceType": "Basic",
                                                      "code": {"text": f"before {n}"}}))["id"]
              for n in range(3)]
    sent = await repo.events(after=mark, limit=1000)
    assert [c.id_ for c in sent] == before
    await receive(rabbitmq.url, queue, ids=[str(c.number) for c in sent], settle=0)
    cursor = sent[-1].number

    rabbitmq.stop()
    try:
        during = [(await write(client, "POST", "Basic", {"resourceType": "Basic",
                                                          "code": {"text": f"during {n}"}}))["id"]
                  for n in range(5)]  # every write succeeds
        lag = {"consumer": "amqp"}
        deadline = time.monotonic() + 30
        while REGISTRY.get_sample_value("fhir_events_consumer_lag_events", lag) != 5.0:
            assert time.monotonic() < deadline, "the lag did not show the backlog"
            await asyncio.sleep(0.05)
        waiting = await repo.records.get(kind=CURSORS, id_="amqp")
        assert waiting is not None and waiting["after"] == cursor  # the backlog waits
    finally:
        rabbitmq.start()
    after = [(await write(client, "POST", "Basic", {"resourceType": "Basic",
                                                     "code": {"text": f"after {n}"}}))["id"]
             for n in range(2)]

    changes = await repo.events(after=cursor, limit=1000)
    assert [c.id_ for c in changes] == during + after
    ids = [str(c.number) for c in changes]
    got = first_of_each(await receive(rabbitmq.url, queue, ids=ids))
    assert [m.message_id for m in got] == ids  # in order, none lost, each once or repeated

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"broker=127.0.0.1:{rabbitmq.port}" in logged
    assert rabbitmq.password not in logged
