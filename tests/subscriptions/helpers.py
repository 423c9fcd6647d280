"""Subscribing over the API, as a client would."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

# The Subscriptions tests' settings: receivers on loopback are allowed, retries are quick.
FAST = {"fhir_subscription_allowed_hosts": "127.0.0.1", "fhir_subscription_backoff": 0.01,
        "fhir_subscription_max_attempts": 3, "fhir_subscription_timeout": 2.0,
        "fhir_events_poll_seconds": 0.01}


def subscription(criteria: str, endpoint: str, *, payload: str | None = None,
                 headers: tuple[str, ...] = (), status: str = "requested") -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint}
    if payload is not None:
        channel["payload"] = payload
    if headers:
        channel["header"] = list(headers)
    return {"resourceType": "Subscription", "status": status, "reason": "test",
            "criteria": criteria, "channel": channel}


async def subscribe(client: httpx.AsyncClient, criteria: str, endpoint: str,
                    **kwargs: Any) -> tuple[str, str]:
    """Create a Subscription, draw its secret, wait until the server activated it."""
    created = await client.post("Subscription", json=subscription(criteria, endpoint, **kwargs))
    assert created.status_code == 201, created.text
    id_ = created.json()["id"]
    answer = await client.post(f"Subscription/{id_}/$secret",
                               json={"resourceType": "Parameters"})
    assert answer.status_code == 200, answer.text
    secret = next(p["valueString"] for p in answer.json()["parameter"] if p["name"] == "secret")
    await status_becomes(client, id_, "active")
    return id_, secret


async def status_becomes(client: httpx.AsyncClient, id_: str, status: str,
                         timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resource: dict[str, Any] = (await client.get(f"Subscription/{id_}")).json()
        if resource.get("status") == status:
            return resource
        if time.monotonic() > deadline:
            raise AssertionError(f"Subscription/{id_} is {resource.get('status')}, not {status}")
        await asyncio.sleep(0.02)


def observation(status: str, patient: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Observation", "status": status,
                           "code": {"text": "heart rate"}}
    if patient is not None:
        out["subject"] = {"reference": f"Patient/{patient}"}
    return out


BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
TOPIC_EXTENSION = f"{BACKPORT}/capabilitystatement-subscriptiontopic-canonical"


async def topic_url(client: httpx.AsyncClient, topic: str) -> str:
    """The topic's canonical as a client discovers it: in the CapabilityStatement."""
    statement = (await client.get("metadata")).json()
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription")
    return next(e["valueCanonical"] for e in entry["extension"]
                if e["url"] == TOPIC_EXTENSION
                and e["valueCanonical"].endswith(f"/SubscriptionTopic/{topic}"))


def topic_subscription(canonical: str, endpoint: str, *, filters: tuple[str, ...] = (),
                       content: str = "id-only", heartbeat: int | None = None,
                       max_count: int | None = None) -> dict[str, Any]:
    """A topic-based Subscription as the R4 Backport IG writes it."""
    channel: dict[str, Any] = {
        "type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": f"{BACKPORT}/backport-payload-content",
                                    "valueCode": content}]}}
    extensions = []
    if heartbeat is not None:
        extensions.append({"url": f"{BACKPORT}/backport-heartbeat-period",
                           "valueUnsignedInt": heartbeat})
    if max_count is not None:
        extensions.append({"url": f"{BACKPORT}/backport-max-count",
                           "valuePositiveInt": max_count})
    if extensions:
        channel["extension"] = extensions
    out: dict[str, Any] = {
        "resourceType": "Subscription", "meta": {"profile": [f"{BACKPORT}/backport-subscription"]},
        "status": "requested", "reason": "test", "criteria": canonical, "channel": channel}
    if filters:
        out["_criteria"] = {"extension": [{"url": f"{BACKPORT}/backport-filter-criteria",
                                           "valueString": f} for f in filters]}
    return out


async def subscribe_topic(client: httpx.AsyncClient, topic: str, endpoint: str,
                          **kwargs: Any) -> str:
    """Subscribe to a topic; the server activates it once its handshake is answered."""
    body = topic_subscription(await topic_url(client, topic), endpoint, **kwargs)
    created = await client.post("Subscription", json=body)
    assert created.status_code == 201, created.text
    id_: str = created.json()["id"]
    await status_becomes(client, id_, "active")
    return id_


def parameters(bundle: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A notification's status (name -> value, but the events) and its events (part name
    -> value)."""
    status: dict[str, Any] = {}
    events = []
    for p in bundle["entry"][0]["resource"]["parameter"]:
        if p["name"] == "notification-event":
            events.append({part["name"]: _value(part) for part in p["part"]})
        else:
            status[p["name"]] = _value(p)
    return status, events


def _value(p: dict[str, Any]) -> Any:
    key = next(k for k in p if k.startswith("value"))
    value = p[key]
    return value["reference"] if key == "valueReference" else value


async def until(check: Any, timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds (AssertionError after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the notifications did not all arrive")
        await asyncio.sleep(0.02)
