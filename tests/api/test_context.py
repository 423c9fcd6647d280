"""The request context middleware: the request id goes back to the caller."""

from __future__ import annotations

import re

import httpx


async def test_a_callers_request_id_is_echoed_and_bounded(client: httpx.AsyncClient) -> None:
    mine = "req-" + "x" * 100
    answer = await client.get("metadata", headers={"X-Request-Id": mine})
    assert answer.headers["x-request-id"] == mine[:64]
    missing = await client.get("Patient/no-such-id", headers={"X-Request-Id": "abc-123"})
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "abc-123"


async def test_a_request_id_is_made_when_none_is_given(client: httpx.AsyncClient) -> None:
    first = (await client.get("metadata")).headers["x-request-id"]
    second = (await client.get("metadata")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second
