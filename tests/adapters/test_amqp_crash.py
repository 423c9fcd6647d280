"""A server process killed (SIGKILL) with events committed but not yet published loses none:
the next process publishes them, in order, from the bridge's durable cursor."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from fhir_server.events.runner import CURSORS
from fhir_server.storage.open import open_repository
from fhir_server.storage.repository import Repository
from tests.support.rabbitmq import Broker, bind_queue, bridge_cursor, first_of_each, receive
from tests.support.server_process import ServerProcess, launch
from tests.support.store import HTTP_TIMEOUT, Store, mint_for_database


async def post_basics(server: ServerProcess, store: Store, label: str, count: int) -> list[str]:
    """``count`` Basic resources written through the server process; their ids."""
    token = await mint_for_database(store, server.base)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    ids = []
    async with httpx.AsyncClient(base_url=server.base + "/", headers=headers,
                                 timeout=HTTP_TIMEOUT) as http:
        for n in range(count):
            answer = await http.post("Basic", json={"resourceType": "Basic",
                                                    "code": {"text": f"{label} {n}"}})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
    return ids


async def cursor_at(repo: Repository, number: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while (cursor := await repo.records.get(kind=CURSORS, id_="amqp")) is None or int(
            cursor["after"]) != number:
        assert time.monotonic() < deadline, f"the bridge's cursor is not at {number}"
        await asyncio.sleep(0.02)
    return number


@pytest.mark.process
@pytest.mark.slow
async def test_a_server_killed_between_commit_and_publish_loses_no_event(
        store: Store, rabbitmq: Broker) -> None:
    exchange = f"fhir.test.{uuid.uuid4().hex[:8]}"
    queue = await bind_queue(rabbitmq.url, exchange, "#")
    env = {"FHIR_AMQP_URL": rabbitmq.url, "FHIR_AMQP_EXCHANGE": exchange,
           "FHIR_EVENTS_POLL_SECONDS": "0.01", "FHIR_EVENTS_LEASE_SECONDS": "1"}
    repo = await open_repository(store.settings())
    server = launch(store, group=True, **env)
    try:
        server.wait_ready()
        mark = await bridge_cursor(repo)
        first = await post_basics(server, store, "first", 3)
        sent = await repo.events(after=mark, limit=100)
        await receive(rabbitmq.url, queue, settle=0, ids=[str(c.number) for c in sent])
        done = await cursor_at(repo, sent[-1].number)  # moved once confirmed

        rabbitmq.stop()
        try:
            # Committed (answered 201) but not published: the broker is away.
            unsent = await post_basics(server, store, "unsent", 5)
            server.kill()
        finally:
            rabbitmq.start()
        killed = await repo.records.get(kind=CURSORS, id_="amqp")
        assert killed is not None and killed["after"] == done  # the backlog waited

        server = launch(store, port=server.port, group=True, **env)
        server.wait_ready()
        later = await post_basics(server, store, "later", 2)

        assert [c.id_ for c in await repo.events(after=mark, limit=100)
                ] == first + unsent + later
        changes = await repo.events(after=done, limit=100)  # after those received
        ids = [str(c.number) for c in changes]
        got = first_of_each(await receive(rabbitmq.url, queue, ids=ids))
        assert [m.message_id for m in got] == ids
        assert [m.body["id"] for m in got] == unsent + later
    finally:
        if server.proc.poll() is None:
            server.stop()
        await repo.close()
    assert server.log is not None
    logged = server.log.read_text(errors="replace")
    assert f"broker=127.0.0.1:{rabbitmq.port}" in logged  # the attempts while it was away
    assert rabbitmq.password not in logged
