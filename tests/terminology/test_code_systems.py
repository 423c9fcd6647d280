"""A user's own code systems: written with the REST API (indexed when first used after each
change) or loaded with `fhir-server terminology load` (any size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.main import create_app
from tests.support.store import ROOT, Store, fhir_client, make_settings, mint
from tests.support.terminology import params

URL = "urn:test:cs:services"


def services(display: str, n: int = 3) -> dict[str, Any]:
    return {"resourceType": "CodeSystem", "id": "services", "url": URL, "status": "active",
            "content": "complete", "hierarchyMeaning": "is-a",
            "concept": [{"code": "ALL", "display": "All services", "concept": [
                {"code": f"S{i}", "display": f"{display} {i}"} for i in range(n)]}]}


async def lookup(http: httpx.AsyncClient, code: str) -> httpx.Response:
    return await http.get("CodeSystem/$lookup", params={"system": URL, "code": code})


async def test_rest_writes_are_followed(client: httpx.AsyncClient) -> None:
    assert (await client.put("CodeSystem/services", json=services("Visit"))).status_code == 201
    r = await lookup(client, "S1")
    assert params(r.json())["display"] == ["Visit 1"]
    assert (await client.put("CodeSystem/services", json=services("Consult", 5))).status_code == 200
    assert params((await lookup(client, "S4")).json())["display"] == ["Consult 4"]
    r = await client.get("CodeSystem/$subsumes", params={"system": URL, "codeA": "ALL",
                                                         "codeB": "S4"})
    assert params(r.json())["outcome"] == ["subsumes"]
    assert (await client.delete("CodeSystem/services")).status_code in (200, 204)
    assert (await lookup(client, "S1")).status_code == 404


@pytest.mark.process
async def test_cli_loads_a_large_code_system_outside_the_resource(store: Store,
                                                                   tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_text(json.dumps(services("Procedure", 50)))
    env = {**{k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DATABASE")},
           **store.env(), "FHIR_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "fhir_server", "terminology", "load", str(path),
                           "--inline-max", "10", "--init"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "indexed 51 concepts" in done.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resourceType": "Patient", "id": "p"}))
    failed = subprocess.run([sys.executable, "-m", "fhir_server", "terminology", "load", str(bad)],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "only CodeSystem" in failed.stderr
    app = create_app(make_settings(store))
    async with app.router.lifespan_context(app), fhir_client(app, await mint(app)) as http:
        stored = (await http.get("CodeSystem/services")).json()
        assert stored["content"] == "not-present" and stored["count"] == 51
        assert "concept" not in stored
        assert params((await lookup(http, "S49")).json())["display"] == ["Procedure 49"]
        r = await http.post("ValueSet/$expand", json={
            "resourceType": "ValueSet", "status": "active", "compose": {"include": [
                {"system": URL, "filter": [{"property": "concept", "op": "descendent-of",
                                            "value": "ALL"}]}]}})
        assert r.json()["expansion"]["total"] == 50
