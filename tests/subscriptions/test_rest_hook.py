"""Classic R4 rest-hook Subscriptions, delivered to a receiver on loopback."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from fhir_server.subscriptions.notify import sign
from tests.subscriptions.helpers import observation, status_becomes, subscribe, subscription
from tests.subscriptions.receiver import receiver


async def test_a_matching_write_is_delivered_signed_in_order_and_a_non_matching_one_is_not(
        client: httpx.AsyncClient) -> None:
    with receiver() as hook:
        _, secret = await subscribe(client, "Observation?status=final", f"{hook.url}/hook",
                                    payload="application/fhir+json",
                                    headers=("Authorization: Bearer receiver-token",))
        first = (await client.post("Observation", json=observation("final"))).json()
        other = (await client.post("Observation", json=observation("preliminary"))).json()
        second = (await client.put(f"Observation/{first['id']}",
                                   json={**observation("final"), "id": first["id"],
                                         "valueQuantity": {"value": 72}})).json()
        # The receiver gets the matching versions in order; the preliminary one, written
        # between them, never comes (one in flight, in event-number order).
        got = await hook.until(2)
    assert [(g.method, g.path) for g in got] == [("PUT", f"/hook/Observation/{first['id']}")] * 2
    assert [orjson.loads(g.body) for g in got] == [first, second]
    for g in got:
        assert g.headers["authorization"] == "Bearer receiver-token"
        assert g.headers["content-type"] == "application/fhir+json"
        assert g.headers["x-signature"] == sign(secret, g.body)
        assert g.headers["x-signature"] != sign(secret, g.body + b" ")  # tampered: fails
        assert "traceparent" not in g.headers  # tracing is off (test_delivery_traces.py: on)
    numbers = [int(g.headers["x-fhir-event-number"]) for g in got]
    assert numbers[0] < numbers[1]
    assert other["id"] not in {g.path.rsplit("/", 1)[-1] for g in got}


async def test_an_empty_payload_is_a_post_without_body(client: httpx.AsyncClient) -> None:
    with receiver() as hook:
        _, secret = await subscribe(client, "Observation?status=final", hook.url + "/ping")
        await client.post("Observation", json=observation("final"))
        got = await hook.until(1)
    assert (got[0].method, got[0].path, got[0].body) == ("POST", "/ping", b"")
    assert got[0].headers["x-signature"] == sign(secret, b"")
    assert "content-type" not in got[0].headers


async def test_a_receiver_down_gets_retries_then_the_subscription_goes_to_error(
        client: httpx.AsyncClient) -> None:
    with receiver() as hook:
        hook.status = 503
        id_, _ = await subscribe(client, "Observation?status=final", hook.url)
        first = (await client.post("Observation", json=observation("final"))).json()
        failed = await status_becomes(client, id_, "error")
        got = list(hook.got)
    assert len(got) == 3  # FHIR_SUBSCRIPTION_MAX_ATTEMPTS in these tests
    assert len({g.headers["x-fhir-event-number"] for g in got}) == 1  # the same notification
    assert "HTTP 503" in failed["error"] and "3 times" in failed["error"]
    # Nothing is lost: what it did not get is read by event number.
    more = (await client.post("Observation", json=observation("final"))).json()
    events = await client.get(f"Subscription/{id_}/$events",
                              params={"content": "full-resource"})
    assert events.status_code == 200, events.text
    bundle = events.json()
    status = bundle["entry"][0]["resource"]
    assert {p["name"]: p.get("valueCode") for p in status["parameter"]}["status"] == "error"
    notified = [p for p in status["parameter"] if p["name"] == "notification-event"]
    numbers = [int(part["valueString"]) for p in notified for part in p["part"]
               if part["name"] == "event-number"]
    # $events numbers the Subscription's own events (it was notified of none); the
    # classic notification's header carries the outbox's number.
    assert numbers == [1, 2]
    assert [e["resource"]["id"] for e in bundle["entry"][1:]] == [first["id"], more["id"]]
    # Paging on from the last number, and the status alone.
    rest = (await client.get(f"Subscription/{id_}/$events", params={
        "eventsSinceNumber": str(numbers[1] + 1)})).json()
    assert len(rest["entry"]) == 1
    status_only = (await client.get(f"Subscription/{id_}/$status")).json()
    assert {"name": "status", "valueCode": "error"} in status_only["entry"][0]["resource"][
        "parameter"]


async def test_a_transaction_that_fails_notifies_nothing(client: httpx.AsyncClient) -> None:
    with receiver() as hook:
        await subscribe(client, "Observation?status=final", hook.url)
        taken = (await client.post("Observation", json=observation("preliminary"))).json()
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation("final"),
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {**observation("final"), "id": taken["id"]},
             "request": {"method": "PUT", "url": f"Observation/{taken['id']}",
                         "ifMatch": 'W/"7"'}}]}  # a stale version: the whole commit fails
        refused = await client.post("", json=bundle)
        assert refused.status_code in (409, 412), refused.text
        later = (await client.post("Observation", json=observation("final"))).json()
        got = await hook.until(1)
        await asyncio.sleep(0.2)
    assert len(hook.got) == 1
    assert got[0].headers["x-fhir-event-number"]
    history = (await client.get(f"Observation/{later['id']}/_history")).json()
    assert history["total"] == 1


async def test_criteria_the_server_cannot_take_are_refused_and_any_status_is_stored(
        client: httpx.AsyncClient) -> None:
    for criteria, says in (("Observation?subject.name=ann", "chained"),
                           ("Observation?_has:Observation:subject:status=final", "_has"),
                           ("Observation?no-such-parameter=1", "cannot be evaluated"),
                           ("Nothing?status=final", "no resource type"),
                           ("Observation?status=final&_count=3", "_count")):
        answer = await client.post("Subscription", json=subscription(
            criteria, "https://receiver.example.org/hook"))
        assert answer.status_code == 422, (criteria, answer.text)
        issue = answer.json()["issue"][0]
        assert issue["expression"] == ["Subscription.criteria"] and says in issue["diagnostics"]
    # A status R4 leaves to the server is stored as given (HAPI does the same), so that
    # Subscriptions moved between servers, and R4's own examples, can be written.
    for status in ("active", "error"):
        answer = await client.post("Subscription", json=subscription(
            "Observation?status=final", "https://receiver.example.org/hook", status=status))
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == status
