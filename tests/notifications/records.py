"""Writing resources and reading the Communications the notifications recorded, over the API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


async def created(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    answer = await client.post(body["resourceType"], json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def communications(client: httpx.AsyncClient, patient_id: str) -> list[dict[str, Any]]:
    bundle = (await client.get("Communication", params={"subject": f"Patient/{patient_id}",
                                                        "_count": "100"})).json()
    return [e["resource"] for e in bundle.get("entry", [])]


async def recorded(client: httpx.AsyncClient, patient_id: str,
                   count: int) -> list[dict[str, Any]]:
    """The patient's Communications once there are ``count`` (sending comes before
    recording)."""
    found: list[dict[str, Any]] = []

    async def look() -> list[dict[str, Any]]:
        found[:] = await communications(client, patient_id)
        return found

    deadline = asyncio.get_running_loop().time() + 15
    while len(await look()) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{len(found)} recorded"
        await asyncio.sleep(0.05)
    return found
