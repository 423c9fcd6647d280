"""Scopes on every interaction kind: the letter granted answers, the letter missing is a 403;
?restrictions; and 401 without a (valid) token on every route kind."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.auth.world import FHIR_JSON, IDS, World, build, ids, observation
from tests.support.store import ClientFor


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    return await build(client)


def _tx(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


async def _call(http: httpx.AsyncClient, kind: str, w: World) -> httpx.Response:
    """One interaction of each kind on Observations of patient a."""
    oid = w.observations["a"][0]
    body = observation(w.patients["a"])
    current = {**observation(w.patients["a"]), "id": oid}
    ident = w.obs_identifier[oid]
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    calls = {
        "read": lambda: http.get(f"Observation/{oid}"),
        "vread": lambda: http.get(f"Observation/{oid}/_history/1"),
        "search": lambda: http.get("Observation"),
        "compartment": lambda: http.get(f"Patient/{w.patients['a']}/Observation"),
        "history-instance": lambda: http.get(f"Observation/{oid}/_history"),
        "history-type": lambda: http.get("Observation/_history"),
        "create": lambda: http.post("Observation", json=body, headers=FHIR_JSON),
        "conditional-create": lambda: http.post(
            "Observation", json=body, headers={**FHIR_JSON, "If-None-Exist": f"identifier={ident}"}),
        "update": lambda: http.put(f"Observation/{oid}", json=current, headers=FHIR_JSON),
        "conditional-update": lambda: http.put(f"Observation?identifier={IDS}|{ident}",
                                               json=body, headers=FHIR_JSON),
        "patch": lambda: http.patch(f"Observation/{oid}", json=patch,
                                    headers={"Content-Type": "application/json-patch+json"}),
        "delete": lambda: http.delete(f"Observation/{oid}"),
        "conditional-delete": lambda: http.delete(f"Observation?identifier={IDS}|{ident}"),
        "transaction": lambda: http.post("", json=_tx("transaction", [
            {"resource": body, "request": {"method": "POST", "url": "Observation"}}]),
            headers=FHIR_JSON),
    }
    return await calls[kind]()


# interaction kind -> the letters it needs (conditional ones search for their target)
NEEDS = {"read": "r", "vread": "r", "search": "s", "compartment": "s", "history-instance": "s",
         "history-type": "s", "create": "c", "conditional-create": "cs", "update": "u",
         "conditional-update": "us", "patch": "u", "delete": "d", "conditional-delete": "ds",
         "transaction": "c"}


@pytest.mark.parametrize("context", ["user", "system"])
@pytest.mark.parametrize("kind", sorted(NEEDS))
async def test_letter_granted_or_missing(client_for: ClientFor, world: World, kind: str,
                                         context: str) -> None:
    letters = NEEDS[kind]
    granted = await client_for(f"{context}/Observation.{letters}")
    resp = await _call(granted, kind, world)
    assert resp.status_code < 300, f"{kind} with {letters}: {resp.text[:300]}"
    for letter in letters:  # without any one of them: 403
        others = "".join(c for c in "cruds" if c != letter)
        missing = await client_for(f"{context}/Observation.{others} {context}/Patient.cruds")
        denied = await _call(missing, kind, world)
        assert denied.status_code == 403, (kind, letter)
        assert denied.json()["resourceType"] == "OperationOutcome"


async def test_v1_scopes(client_for: ClientFor, world: World) -> None:
    reader = await client_for("user/Observation.read")
    assert (await _call(reader, "read", world)).status_code == 200
    assert (await _call(reader, "search", world)).status_code == 200
    assert (await _call(reader, "create", world)).status_code == 403
    writer = await client_for("user/Observation.write")
    assert (await _call(writer, "create", world)).status_code == 201
    assert (await _call(writer, "read", world)).status_code == 403


async def test_other_type_not_covered(client_for: ClientFor, world: World) -> None:
    http = await client_for("system/Observation.cruds")
    assert (await http.get(f"Encounter/{world.encounters['a']}")).status_code == 403
    assert (await http.get("Encounter")).status_code == 403


async def test_restriction_filters_reads_searches_and_writes(client_for: ClientFor,
                                                            world: World) -> None:
    lab = await client_for("user/Observation.rus?category=laboratory")
    expected = {f"Observation/{o}" for o, c in world.obs_category.items() if c == "laboratory"}
    bundle = (await lab.get("Observation")).json()
    assert ids(bundle) == expected and bundle["total"] == len(expected)
    for oid, category in world.obs_category.items():
        assert (await lab.get(f"Observation/{oid}")).status_code == (
            200 if category == "laboratory" else 404)
    vital = next(o for o, c in world.obs_category.items() if c == "vital-signs")
    body = {**observation(world.patients["a"], category="vital-signs"), "id": vital}
    assert (await lab.put(f"Observation/{vital}", json=body,
                          headers=FHIR_JSON)).status_code == 404
    lab_id = next(iter(expected)).split("/")[1]
    relabel = {**observation(world.patients["a"], category="vital-signs"), "id": lab_id}
    assert (await lab.put(f"Observation/{lab_id}", json=relabel,
                          headers=FHIR_JSON)).status_code == 403


async def test_system_history_needs_search(client_for: ClientFor, world: World) -> None:
    none = await client_for("system/Observation.r")
    assert (await none.get("_history")).status_code == 403
    obs_only = await client_for("system/Observation.s")
    entries = (await obs_only.get("_history")).json()["entry"]
    assert {e["fullUrl"].split("/fhir/")[1].split("/")[0] for e in entries} == {"Observation"}


ROUTE_KINDS = [
    ("GET", "Patient/x"), ("GET", "Patient/x/_history/1"), ("GET", "Patient"),
    ("POST", "Patient/_search"), ("GET", "Patient/x/Observation"), ("GET", "Patient/x/_history"),
    ("GET", "Patient/_history"), ("GET", "_history"), ("POST", "Patient"), ("PUT", "Patient/x"),
    ("PUT", "Patient?identifier=a|b"), ("PATCH", "Patient/x"), ("DELETE", "Patient/x"),
    ("DELETE", "Patient?identifier=a|b"), ("POST", ""),
]


@pytest.mark.parametrize(("method", "path"), ROUTE_KINDS)
async def test_401_without_token(client_for: ClientFor, method: str, path: str) -> None:
    anonymous = await client_for(None)
    resp = await anonymous.request(method, path, content=b"{}", headers=FHIR_JSON)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer realm=")
    assert resp.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Bearer ", "Basic dXNlcjpwYXNz"])
async def test_401_with_bad_token(client_for: ClientFor, header: str) -> None:
    anonymous = await client_for(None)
    resp = await anonymous.get("Patient", headers={"Authorization": header})
    assert resp.status_code == 401
    assert "error=" in resp.headers["www-authenticate"]


async def test_public_endpoints_need_no_token(client_for: ClientFor) -> None:
    anonymous = await client_for(None)
    assert (await anonymous.get("metadata")).status_code == 200
    assert (await anonymous.get("http://testserver/fhir/.well-known/smart-configuration")
            ).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"fhir_auth": "off"}])
async def test_auth_off_needs_no_token(client_for: ClientFor,
                                       settings_overrides: dict[str, object]) -> None:
    anonymous = await client_for(None)
    assert (await anonymous.get("Patient")).status_code == 200
