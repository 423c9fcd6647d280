"""Builders and checks for transaction and batch Bundles (FHIR R4 http.html#transaction)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

# A response.location: "Type/id/_history/v", possibly absolute.
LOCATION_RE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})/_history/([^/]+)$")


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def bundle(entries: list[dict[str, Any]], type_: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": type_, "entry": entries}


def post(resource: dict[str, Any], full_url: str | None = None, *,
         if_none_exist: str | None = None, url: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "POST", "url": url or resource["resourceType"]}
    if if_none_exist is not None:
        request["ifNoneExist"] = if_none_exist
    entry: dict[str, Any] = {"resource": resource, "request": request}
    if full_url is not None:
        entry["fullUrl"] = full_url
    return entry


def put(url: str, resource: dict[str, Any], *, if_match: str | None = None,
        full_url: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "PUT", "url": url}
    if if_match is not None:
        request["ifMatch"] = if_match
    entry: dict[str, Any] = {"resource": resource, "request": request}
    if full_url is not None:
        entry["fullUrl"] = full_url
    return entry


def delete(url: str) -> dict[str, Any]:
    return {"request": {"method": "DELETE", "url": url}}


def get(url: str, **extra: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url, **extra}}


def patch_entry(url: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"resource": parameters, "request": {"method": "PATCH", "url": url}}


async def send(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    """POST [base] with a Bundle."""
    return await client.post("", json=body, headers={"Content-Type": "application/fhir+json"})


def response_entries(resp: httpx.Response, kind: str) -> list[dict[str, Any]]:
    """The entries of a successful transaction-response / batch-response."""
    assert resp.status_code == 200, resp.text[:3000]
    body = resp.json()
    assert body["resourceType"] == "Bundle", body
    assert body["type"] == f"{kind}-response"
    entries = body.get("entry", [])
    for e in entries:
        assert "response" in e and "status" in e["response"], e
    return entries


def status_code(entry: dict[str, Any]) -> int:
    return int(entry["response"]["status"].split()[0])


def location(entry: dict[str, Any]) -> tuple[str, str, str]:
    """(type, id, version) of a response entry's location."""
    loc = entry["response"].get("location")
    assert loc, entry
    m = LOCATION_RE.search(loc)
    assert m, f"location is not Type/id/_history/v: {loc!r}"
    return m.group(1), m.group(2), m.group(3)


def reference_of(entry: dict[str, Any]) -> str:
    type_, id_, _ = location(entry)
    return f"{type_}/{id_}"


def outcome_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for issue in body.get("issue", []):
        parts.append(str(issue.get("diagnostics", "")))
        parts.extend(str(x) for x in issue.get("expression", []))
        parts.extend(str(x) for x in issue.get("location", []))
        parts.append(str(issue.get("details", {}).get("text", "")))
    return " | ".join(parts)


def assert_failed(resp: httpx.Response, *, entry_index: int,
                  statuses: tuple[int, ...] | None = None) -> dict[str, Any]:
    """A failed transaction: 4xx/5xx OperationOutcome naming Bundle.entry[i]."""
    if statuses is None:
        assert 400 <= resp.status_code < 600, (resp.status_code, resp.text[:2000])
    else:
        assert resp.status_code in statuses, (resp.status_code, resp.text[:2000])
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body.get("issue"), body
    text = outcome_text(body)
    assert f"entry[{entry_index}]" in text, f"the outcome does not name entry[{entry_index}]: {text}"
    return body


async def total(client: httpx.AsyncClient, path: str, params: dict[str, str] | None = None) -> int:
    resp = await client.get(path, params={**(params or {}), "_summary": "count"})
    assert resp.status_code == 200, resp.text[:2000]
    return int(resp.json()["total"])


async def history_total(client: httpx.AsyncClient, path: str = "_history") -> int:
    resp = await client.get(path)
    assert resp.status_code == 200, resp.text[:2000]
    return int(resp.json()["total"])


def strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, string) in a JSON value."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]")


def references(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, Reference.reference) in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if k == "reference" and isinstance(v, str):
                yield sub, v
            else:
                yield from references(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from references(v, f"{path}[{i}]")


def rewrite(value: Any, mapping: dict[str, str]) -> Any:
    """A copy of a JSON value with every Reference.reference in mapping replaced."""
    if isinstance(value, dict):
        return {k: (mapping.get(v, v) if k == "reference" and isinstance(v, str)
                    else rewrite(v, mapping)) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, mapping) for v in value]
    return value
