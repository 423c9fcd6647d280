"""Every notification is audited as a transmit AuditEvent: the Subscription, the resources it
named (references only) and the receiver's host, never the content. A failed attempt is
one AuditEvent; deliveries at the first attempt are grouped, within a second."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI

from tests.subscriptions.helpers import observation, status_becomes, subscribe
from tests.subscriptions.receiver import receiver
from tests.support.store import ClientFor


async def _transmits(app: FastAPI, client_for: ClientFor) -> list[dict[str, object]]:
    await app.state.audit.flush()
    auditor = await client_for("system/AuditEvent.rs")
    r = await auditor.get("AuditEvent", params={"type": "transmit", "_count": "100"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


async def _grouped(app: FastAPI, client_for: ClientFor, subscription: str,
                   ) -> list[dict[str, object]]:
    """The transmit AuditEvents of ``subscription``, once its grouped deliveries are on
    record (within GROUP_SECONDS of the first)."""
    deadline = time.monotonic() + 10
    while True:
        mine = [e for e in await _transmits(app, client_for)
                if e["entity"][0]["what"]["reference"] == f"Subscription/{subscription}"]  # type: ignore[index]
        if mine or time.monotonic() > deadline:
            return mine
        await asyncio.sleep(0.2)


async def test_each_attempt_is_audited_with_references_only(
        app: FastAPI, client: httpx.AsyncClient, client_for: ClientFor) -> None:
    with receiver() as hook:
        delivered_id, _ = await subscribe(client, "Observation?status=final",
                                          f"{hook.url}/hook", payload="application/fhir+json")
        seen = (await client.post("Observation", json=observation("final"))).json()
        await hook.until(1)
        hook.status = 503
        failing_id, _ = await subscribe(client, "Observation?status=amended", hook.url)
        missed = (await client.post("Observation", json=observation("amended"))).json()
        await status_becomes(client, failing_id, "error")
    await _grouped(app, client_for, delivered_id)
    events = await _transmits(app, client_for)
    by_subscription: dict[str, list[dict[str, object]]] = {}
    for event in events:
        entities = event["entity"]
        assert isinstance(entities, list)
        by_subscription.setdefault(entities[0]["what"]["reference"], []).append(event)
    ok = by_subscription[f"Subscription/{delivered_id}"]
    assert [e["outcome"] for e in ok] == ["0"]
    assert ok[0]["entity"][1]["what"]["reference"] == f"Observation/{seen['id']}"  # type: ignore[index]
    failed = by_subscription[f"Subscription/{failing_id}"]
    assert [e["outcome"] for e in failed] == ["8"] * 3  # FHIR_SUBSCRIPTION_MAX_ATTEMPTS here
    assert all(e["entity"][1]["what"]["reference"] == f"Observation/{missed['id']}"  # type: ignore[index]
               for e in failed)
    for event in events:
        assert event["type"]["code"] == "transmit"  # type: ignore[index]
        receiver_agent = event["agent"][1]  # type: ignore[index]
        assert receiver_agent["name"] == "127.0.0.1"  # the host, not the URL
        assert "valueQuantity" not in str(event) and "/hook" not in str(event)


async def test_deliveries_at_the_first_attempt_share_one_audit_event(
        app: FastAPI, client: httpx.AsyncClient, client_for: ClientFor) -> None:
    with receiver() as hook:
        id_, _ = await subscribe(client, "Observation?status=final", f"{hook.url}/hook")
        written = [(await client.post("Observation", json=observation("final"))).json()["id"]
                   for _ in range(5)]
        await hook.until(len(written))
    events = await _grouped(app, client_for, id_)
    named = [e["what"]["reference"] for event in events
             for e in event["entity"][1:]]  # type: ignore[index]
    assert sorted(named) == sorted(f"Observation/{i}" for i in written)
    assert len(events) < len(written)  # grouped: the five came within a second
    for event in events:
        assert event["outcome"] == "0"
        period = event["period"]
        assert isinstance(period, dict) and period["start"] <= period["end"]
