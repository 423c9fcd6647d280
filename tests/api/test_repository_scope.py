"""A route is handed the request's scoped repository, or nothing: never the app's unscoped
one (``api/deps.py``'s ``get_repo`` fails closed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.responses import Response

from fhir_server.api.deps import RepoDep, get_repo
from fhir_server.api.negotiation import json_response
from fhir_server.auth.enforce import enforce_request


def dependency_calls(dependant: Any) -> set[Any]:
    """Every dependency a route resolves, its router's included, however deep."""
    calls = set()
    for sub in dependant.dependencies:
        calls.add(sub.call)
        calls |= dependency_calls(sub)
    return calls


def served_routes(app: FastAPI) -> Iterator[tuple[str, set[Any]]]:
    """(methods and path, the dependencies resolved) of every route the app serves; an
    included router's routes as included (its prefix and dependencies added)."""
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        for served in contexts() if callable(contexts) else [route]:
            if isinstance(served, APIRoute) or hasattr(served, "original_route"):
                yield (f"{sorted(served.methods)} {served.path}",
                       dependency_calls(served.dependant))


def test_every_route_handed_a_repository_binds_the_caller_first(app: FastAPI) -> None:
    handed = {route: calls for route, calls in served_routes(app) if get_repo in calls}
    unbound = [route for route, calls in handed.items() if enforce_request not in calls]
    assert unbound == []
    # The FHIR interactions (read, vread, search, history, writes, patch) and batch.
    assert len(handed) >= 15, sorted(handed)


async def test_a_route_outside_enforcement_gets_no_repository(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    reached: list[object] = []

    async def unguarded(repo: RepoDep) -> Response:
        reached.append(repo)
        return json_response({"resourceType": "Parameters"})

    app.add_api_route("/unguarded-probe", unguarded, methods=["GET"])
    resp = await client.get("http://testserver/unguarded-probe")
    assert resp.status_code == 500
    issue = resp.json()["issue"][0]
    assert issue["code"] == "exception"
    assert resp.headers["X-Request-Id"] in issue["diagnostics"]
    assert reached == []


async def test_the_fhir_routes_still_get_their_repository(client: httpx.AsyncClient) -> None:
    created = await client.post("Patient", json={"resourceType": "Patient", "gender": "other"})
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    read = await client.get(f"Patient/{pid}")
    assert read.status_code == 200 and read.json()["id"] == pid
    found = await client.get("Patient", params={"_id": pid})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [pid]
    history = await client.get(f"Patient/{pid}/_history")
    assert history.json()["total"] == 1
    batch = await client.post("", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{pid}"}}]})
    assert batch.json()["entry"][0]["response"]["status"].startswith("200")
