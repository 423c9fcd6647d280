"""A restart (a new app on the same database) resumes every Subscription where it stopped."""

from __future__ import annotations

import orjson

from fhir_server.main import create_app
from fhir_server.search.extract import index_resource
from fhir_server.storage.open import open_repository
from tests.subscriptions.conftest import FAST
from tests.subscriptions.helpers import observation, subscribe
from tests.subscriptions.receiver import Got, receiver
from tests.support.store import Store, fhir_client, make_settings, mint


async def test_a_restart_delivers_what_was_not_delivered_and_what_came_meanwhile(
        store: Store) -> None:
    with receiver() as hook:
        hook.status = 503  # down: the first app keeps retrying, its notifications pending
        first = create_app(make_settings(store, **{
            **FAST, "fhir_subscription_max_attempts": 100, "fhir_subscription_backoff": 0.05}))
        async with (first.router.lifespan_context(first),
                    fhir_client(first, await mint(first)) as client):
            await subscribe(client, "Observation?status=final", hook.url,
                            payload="application/fhir+json")
            before = [(await client.post("Observation", json=observation("final"))).json()
                      for _ in range(3)]
            await hook.until(2)  # attempts are being made
        # While no server runs, another writer commits a matching change.
        settings = make_settings(store, **FAST)
        repo = await open_repository(settings)
        try:
            while_down = {**observation("final"), "id": "while-down"}
            await repo.write(type_="Observation", id_="while-down", previous=None,
                             text=orjson.dumps(while_down).decode(),
                             index=index_resource(while_down), method="POST")
        finally:
            await repo.close()
        hook.status = 200
        second = create_app(settings)
        async with (second.router.lifespan_context(second),
                    fhir_client(second, await mint(second)) as client):
            after = (await client.post("Observation", json=observation("final"))).json()
            delivered: list[Got] = []
            while len(delivered) < 5:
                await hook.until(len(hook.got) + 1)
                delivered = hook.delivered()
    ids = [orjson.loads(g.body)["id"] for g in delivered]
    assert ids == [*(b["id"] for b in before), "while-down", after["id"]]
    numbers = [int(g.headers["x-fhir-event-number"]) for g in delivered]
    assert numbers == sorted(numbers)
