"""Topic-based Subscriptions (R4 Subscriptions Backport IG), delivered to receivers on
loopback: handshakes, journey topics, filters, payloads, batches and heartbeats."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import orjson

from tests.factories import appointment
from tests.subscriptions.helpers import (
    TOPIC_EXTENSION,
    parameters,
    status_becomes,
    subscribe_topic,
    topic_subscription,
    topic_url,
    until,
)
from tests.subscriptions.receiver import Receiver, receiver

JOURNEYS = ("appointment-booked", "appointment-rescheduled", "appointment-cancelled")


def notifications(hook: Receiver, path: str, kind: str = "event-notification"
                  ) -> list[dict[str, Any]]:
    found = []
    for got in hook.got:
        if got.path == path:
            body = orjson.loads(got.body)
            if parameters(body)[0]["type"] == kind:
                found.append(body)
    return found


def versions(bundle: dict[str, Any]) -> list[str]:
    return [e["focus"] for e in parameters(bundle)[1]]


async def test_an_appointment_booked_moved_and_cancelled_reaches_each_topic_once(
        client: httpx.AsyncClient) -> None:
    doctor = f"Practitioner/{uuid.uuid4().hex}"
    with receiver() as hook:
        for topic in (*JOURNEYS, "Appointment"):
            await subscribe_topic(client, topic, f"{hook.url}/{topic}")
        booked = (await client.post("Appointment", json=appointment(
            "Patient/ann", [doctor], "2026-12-07T09:00:00Z", "2026-12-07T09:30:00Z"))).json()
        id_ = booked["id"]
        moved = (await client.put(f"Appointment/{id_}", json={**appointment(
            "Patient/ann", [doctor], "2026-12-08T09:00:00Z", "2026-12-08T09:30:00Z"),
            "id": id_})).json()
        cancelled = (await client.put(f"Appointment/{id_}", json={**appointment(
            "Patient/ann", [doctor], "2026-12-08T09:00:00Z", "2026-12-08T09:30:00Z",
            status="cancelled"), "id": id_})).json()
        written = [booked, moved, cancelled]
        await until(lambda: sum(len(versions(b)) for b in notifications(
            hook, "/Appointment")) >= 3 and all(notifications(hook, f"/{t}") for t in JOURNEYS))
        await asyncio.sleep(0.3)  # nothing more comes
    every = [e for b in notifications(hook, "/Appointment") for e in parameters(b)[1]]
    assert [e["focus"] for e in every] == [
        f"Appointment/{id_}/_history/{w['meta']['versionId']}" for w in written]
    # Each Subscription numbers its own events: 1, 2, 3 here, 1 on each journey topic.
    assert [int(e["event-number"]) for e in every] == list(range(1, len(written) + 1))
    for topic, resource in zip(JOURNEYS, written, strict=True):
        [bundle] = notifications(hook, f"/{topic}")  # exactly once
        status, [event] = parameters(bundle)
        assert status["topic"].endswith(f"/SubscriptionTopic/{topic}")
        assert status["status"] == "active" and status["events-since-subscription-start"] == "1"
        assert event["focus"] == f"Appointment/{id_}/_history/{resource['meta']['versionId']}"
        assert event["event-number"] == "1"
        # id-only: the entry names the resource, and carries none of it.
        [entry] = bundle["entry"][1:]
        assert set(entry) == {"fullUrl", "request"}
        assert entry["fullUrl"].endswith(f"/Appointment/{id_}")
        assert entry["request"] == {"method": "POST" if topic == JOURNEYS[0] else "PUT",
                                    "url": f"Appointment/{id_}"}
        [handshake] = notifications(hook, f"/{topic}", "handshake")
        assert parameters(handshake)[0]["status"] == "requested"


async def test_an_encounter_finished_comes_with_its_resource(client: httpx.AsyncClient) -> None:
    with receiver() as hook:
        await subscribe_topic(client, "encounter-finished", hook.url, content="full-resource")
        planned = (await client.post("Encounter", json={
            "resourceType": "Encounter", "status": "planned", "class": {"code": "AMB"},
            "subject": {"reference": "Patient/ann"}})).json()
        finished = (await client.put(f"Encounter/{planned['id']}", json={
            **planned, "status": "finished"})).json()
        await until(lambda: notifications(hook, "/"))
    [bundle] = notifications(hook, "/")
    [entry] = bundle["entry"][1:]
    assert entry["resource"] == finished
    assert entry["request"] == {"method": "PUT", "url": f"Encounter/{planned['id']}"}
    assert bundle["entry"][0]["resource"]["meta"]["profile"] == [
        "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
        "backport-subscription-status-r4"]
    assert [g.headers["content-type"] for g in hook.got] == ["application/fhir+json"] * 2


async def test_filter_criteria_narrow_a_topic(client: httpx.AsyncClient) -> None:
    doctor = f"Practitioner/{uuid.uuid4().hex}"
    with receiver() as hook:
        await subscribe_topic(client, "appointment-booked", hook.url,
                              filters=("Appointment?patient=Patient/ann",))
        other = (await client.post("Appointment", json=appointment(
            "Patient/bob", [doctor], "2026-12-07T09:00:00Z", "2026-12-07T09:30:00Z"))).json()
        mine = (await client.post("Appointment", json=appointment(
            "Patient/ann", [doctor], "2026-12-07T10:00:00Z", "2026-12-07T10:30:00Z"))).json()
        await until(lambda: notifications(hook, "/"))
        await asyncio.sleep(0.3)
    assert [versions(b) for b in notifications(hook, "/")] == [
        [f"Appointment/{mine['id']}/_history/1"]]
    assert other["id"] != mine["id"]


async def test_events_wait_for_the_handshake_and_come_in_batches_of_max_count(
        client: httpx.AsyncClient) -> None:
    with receiver() as hook:
        hook.delays = [1.0]  # the handshake is answered late: events queue meanwhile
        canonical = await topic_url(client, "Patient")
        created = (await client.post("Subscription", json=topic_subscription(
            canonical, hook.url, max_count=2, content="empty"))).json()
        patients = [(await client.post("Patient", json={"resourceType": "Patient"})).json()
                    for _ in range(3)]
        await status_becomes(client, created["id"], "active")
        await until(lambda: len(notifications(hook, "/")) >= 2)
    batches = [parameters(b)[1] for b in notifications(hook, "/")]
    assert [len(b) for b in batches] == [2, 1]
    assert all("focus" not in e for b in batches for e in b)  # empty: numbers only
    assert [len(b["entry"]) for b in notifications(hook, "/")] == [1, 1]
    assert [parameters(b)[0]["events-since-subscription-start"]
            for b in notifications(hook, "/")] == ["2", "3"]
    assert len(patients) == 3


async def test_a_handshake_then_heartbeats_when_idle(client: httpx.AsyncClient) -> None:
    with receiver() as hook:
        id_ = await subscribe_topic(client, "invoice-issued", hook.url, heartbeat=1)
        await until(lambda: notifications(hook, "/", "heartbeat"), timeout=5)
    kinds = [parameters(orjson.loads(g.body))[0]["type"] for g in hook.got]
    assert kinds[:2] == ["handshake", "heartbeat"]
    status, events = parameters(orjson.loads(hook.got[1].body))
    assert (status["status"], status["subscription"], events) == (
        "active", f"Subscription/{id_}", [])
    assert "x-fhir-event-number" not in hook.got[1].headers


async def test_a_receiver_that_fails_the_handshake_puts_the_subscription_in_error(
        client: httpx.AsyncClient) -> None:
    with receiver() as hook:
        hook.status = 500
        canonical = await topic_url(client, "claim-response")
        created = (await client.post("Subscription", json=topic_subscription(
            canonical, hook.url))).json()
        failed = await status_becomes(client, created["id"], "error")
    assert len(hook.got) == 1 and "handshake" in failed["error"]
    assert "HTTP 500" in failed["error"]


async def test_status_and_events_name_the_topic(client: httpx.AsyncClient) -> None:
    with receiver() as hook:
        id_ = await subscribe_topic(client, "Patient", hook.url)
        patient = (await client.post("Patient", json={"resourceType": "Patient"})).json()
        await until(lambda: notifications(hook, "/"))
        events = (await client.get(f"Subscription/{id_}/$events",
                                   params={"eventsSinceNumber": "1"})).json()
        # $status counts what the cursor saved, written just after the receiver answered.
        states: list[dict[str, Any]] = []

        async def counted() -> bool:
            states.append(parameters((await client.get(f"Subscription/{id_}/$status")).json())[0])
            return bool(states[-1]["events-since-subscription-start"] == "1")

        deadline = time.monotonic() + 10
        while not await counted() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    topic, found = parameters(events)
    assert topic["topic"].endswith("/SubscriptionTopic/Patient")
    assert topic["type"] == "query-event"
    assert [(e["event-number"], e["focus"]) for e in found] == [
        ("1", f"Patient/{patient['id']}/_history/1")]
    state = states[-1]
    assert (state["type"], state["status"], state["events-since-subscription-start"]) == (
        "query-status", "active", "1")


async def test_an_unknown_topic_is_refused(client: httpx.AsyncClient) -> None:
    canonical = await topic_url(client, "appointment-booked")
    for criteria in (canonical.replace("appointment-booked", "appointment-eaten"),
                     "https://elsewhere.example.org/SubscriptionTopic/appointment-booked"):
        answer = await client.post("Subscription", json=topic_subscription(
            criteria, "https://receiver.example.org/hook"))
        assert answer.status_code == 422, answer.text
        assert answer.json()["issue"][0]["expression"] == ["Subscription.criteria"]
    wrong = await client.post("Subscription", json=topic_subscription(
        canonical, "https://receiver.example.org/hook", filters=("Patient?name=ann",)))
    assert wrong.status_code == 422


async def test_the_capability_statement_lists_every_topic(client: httpx.AsyncClient) -> None:
    statement = (await client.get("metadata")).json()
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription")
    base = statement["implementation"]["url"]
    listed = [e["valueCanonical"] for e in entry["extension"] if e["url"] == TOPIC_EXTENSION]
    for topic in (*JOURNEYS, "encounter-finished", "invoice-issued", "claim-response",
                  "payment-posted", "eligibility-response", "Patient", "Appointment"):
        assert f"{base}/SubscriptionTopic/{topic}" in listed
    assert {"status", "events"} <= {op["name"] for op in entry["operation"]}

