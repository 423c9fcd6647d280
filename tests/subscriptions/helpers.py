"""Subscribing over the API, as a client would."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx


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
