"""HTTP helpers of the revenue-cycle tests: exact-decimal bodies, creating, reading a bill's
adjudications; what the worklist tests share (the worklist's code system, the clinic as
the billing provider). The resources themselves are built in tests/factories.py."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

WORKLIST = "https://fhir-rcm-server.org/CodeSystem/worklist"  # a worklist Task's step codes
CLINIC = {"fhir_billing_provider": "Organization/clinic"}  # the provider bills name


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """The worklist tests' app: bills name the clinic as their provider. A test module
    imports it to use it (it overrides tests/conftest.py's)."""
    return dict(CLINIC)


def body(value: Any) -> bytes:
    """JSON with Decimals written as exact numbers."""
    return orjson.dumps(value, default=_number)


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(type(value).__name__)


HEADERS = {"Content-Type": "application/fhir+json"}


async def post(http: httpx.AsyncClient, url: str, value: Any,
               headers: dict[str, str] | None = None) -> httpx.Response:
    return await http.post(url, content=body(value), headers={**HEADERS, **(headers or {})})


async def create(http: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await post(http, resource["resourceType"], resource)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def by_type(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle.get("entry", []):
        out.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return out


def adjudication(item: dict[str, Any], code: str) -> Decimal:
    for a in item["adjudication"]:
        if a["category"]["coding"][0]["code"] == code:
            return Decimal(str(a["amount"]["value"]))
    raise KeyError(code)


def share(invoice: dict[str, Any], code: str) -> Decimal:
    for c in invoice.get("totalPriceComponent", []):
        if c["code"]["coding"][0]["code"] == code:
            return Decimal(str(c["amount"]["value"]))
    raise KeyError(code)


async def found_eventually(http: httpx.AsyncClient, type_: str, params: dict[str, str], *,
                           total: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The resources a search finds once it finds ``total`` of them: for what a worker
    writes after a commit (the visit's bill, a worklist Task)."""
    deadline = time.monotonic() + timeout
    while True:
        r = await http.get(type_, params=params)
        assert r.status_code == 200, r.text
        entries = [e["resource"] for e in r.json().get("entry", [])
                   if e.get("search", {}).get("mode", "match") == "match"]
        if len(entries) >= total or time.monotonic() > deadline:
            assert len(entries) == total, f"{type_}?{params}: {len(entries)}, not {total}"
            return entries
        await asyncio.sleep(0.05)


async def requested(http: httpx.AsyncClient, task_id: str, *,
                    timeout: float = 15.0) -> dict[str, Any]:
    """Set a worklist Task (as now stored) to ``requested``, as whoever works the list does,
    and wait for the worklist worker to run its step: the Task as it is once it is no
    longer requested (completed, or failed again with the new reason)."""
    current = (await http.get(f"Task/{task_id}")).json()
    r = await http.put(f"Task/{task_id}", json={**current, "status": "requested"})
    assert r.status_code == 200, r.text
    version = int(r.json()["meta"]["versionId"])
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = (await http.get(f"Task/{task_id}")).json()
        if int(task["meta"]["versionId"]) > version and task["status"] != "requested":
            return task
        assert time.monotonic() < deadline, f"Task/{task_id} still {task['status']}"
        await asyncio.sleep(0.05)
