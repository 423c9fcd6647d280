"""Moving data between engines: `fhir-server export`, then `fhir-server load`, by the CLI.

Each test exports from one store and loads into a fresh one and compares what a client
reads. On the mongo engine's run the stores are of both engines (SQLite to MongoDB and
back); a data directory of the old embedded FerretDB is refused at start-up with the
way out, and that way out (``export --from-ferretdb``) is taken.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fhir_server.main import create_app
from tests.factories import patient
from tests.support.server_process import free_port, serve_until_exit
from tests.support.store import ROOT, Store, fhir_client, make_settings, mint, mongo_only


def cli(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DATABASE")}
    env |= {**store.env(), "FHIR_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "fhir_server", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


async def fill(store: Store) -> dict[str, Any]:
    """Patients (one updated twice, one deleted) and an Observation citing one of them."""
    app = create_app(make_settings(store))
    async with app.router.lifespan_context(app), fhir_client(app, await mint(app)) as http:
        ids = [(await http.post("Patient", json=patient(family=f"Move{i}"))).json()["id"]
               for i in range(3)]
        for family in ("Moved", "Moved again"):
            changed = patient(family=family, id_=ids[0])
            assert (await http.put(f"Patient/{ids[0]}", json=changed)).status_code == 200
        assert (await http.delete(f"Patient/{ids[2]}")).status_code in (200, 204)
        obs = ('{"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, '
               f'"subject": {{"reference": "Patient/{ids[1]}"}}, '
               '"valueQuantity": {"value": 72.50, "unit": "kg"}}')  # 72.50 as text: exact
        obs_id = (await http.post("Observation", content=obs, headers={
            "Content-Type": "application/fhir+json"})).json()["id"]
        return {"patients": ids, "observation": obs_id}


async def snapshot(store: Store, made: dict[str, Any]) -> dict[str, Any]:
    """What a client reads: contents without server meta, the histories, a search."""
    app = create_app(make_settings(store))
    async with app.router.lifespan_context(app), fhir_client(app, await mint(app)) as http:
        out: dict[str, Any] = {}
        for ref in [f"Patient/{i}" for i in made["patients"]] + \
                   [f"Observation/{made['observation']}"]:
            resp = await http.get(ref)
            body = resp.json()
            body.pop("meta", None)
            out[ref] = (resp.status_code, body if resp.status_code == 200 else None)
            history = (await http.get(f"{ref}/_history")).json()
            # (a replay writes every version with PUT, so only deletions are told apart)
            out[ref + "/_history"] = [
                (e["request"]["method"] == "DELETE",
                 e["resource"].get("name", [{}])[0].get("family") if "resource" in e else None)
                for e in history.get("entry", [])]
        found = await http.get("Observation", params={"subject": f"Patient/{made['patients'][1]}"})
        out["search"] = [e["resource"]["id"] for e in found.json().get("entry", [])]
        return out


async def audit_ids(store: Store) -> set[str]:
    app = create_app(make_settings(store))
    async with app.router.lifespan_context(app), \
            fhir_client(app, await mint(app, "system/AuditEvent.rs")) as http:
        found = await http.get("AuditEvent", params={"_count": "1000", "_elements": "id"})
        return {e["resource"]["id"] for e in found.json().get("entry", [])}


def current_only(view: dict[str, Any]) -> dict[str, Any]:
    """The view without histories (what a plain export keeps) and without deleted ones."""
    return {k: v for k, v in view.items()
            if not k.endswith("/_history") and not (isinstance(v, tuple) and v[0] in (404, 410))}


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    return Store(data_dir=tmp_path / "sqlite")


@pytest.mark.slow
@pytest.mark.process
async def test_export_history_and_load_keeps_versions_and_deletions(
        sqlite_store: Store, store: Store, tmp_path: Path) -> None:
    made = await fill(sqlite_store)
    before = await snapshot(sqlite_store, made)
    out = tmp_path / "export"
    done = cli(sqlite_store, "export", "--out", str(out), "--history")
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (out / "history").iterdir()) == ["Observation.json",
                                                                   "Patient.json"]
    audit = [json.loads(line)["id"] for line in
             (out / "audit" / "AuditEvent.ndjson").read_text().splitlines()]
    assert audit  # the writes and reads above were audited
    loaded = cli(store, "load", "--init", "--quiet", str(out))
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert await snapshot(store, made) == before
    assert set(audit) <= await audit_ids(store)
    # and back again, from the run's engine to SQLite
    back_dir, back = tmp_path / "back", Store(data_dir=tmp_path / "sqlite-again")
    assert cli(store, "export", "--out", str(back_dir), "--history").returncode == 0
    assert cli(back, "load", "--init", "--quiet", str(back_dir)).returncode == 0
    assert await snapshot(back, made) == before


@pytest.mark.slow
@pytest.mark.process
async def test_export_current_versions_as_ndjson(sqlite_store: Store, store: Store,
                                                 tmp_path: Path) -> None:
    made = await fill(sqlite_store)
    before = await snapshot(sqlite_store, made)
    out = tmp_path / "export"
    done = cli(sqlite_store, "export", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (out / "Patient.ndjson").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(made["patients"][:2])
    assert (out / "Observation.ndjson").read_text().count("72.50") == 1  # decimals kept as sent
    assert cli(store, "load", "--init", "--quiet", str(out)).returncode == 0
    assert current_only(await snapshot(store, made)) == current_only(before)


@pytest.mark.process
def test_old_ferretdb_data_dir_is_refused_with_the_way_out(tmp_path: Path) -> None:
    (tmp_path / "ferretdb").mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DATABASE")}
    env |= {"FHIR_DATA_DIR": str(tmp_path), "FHIR_PORT": str(port)}
    code, output = serve_until_exit(tmp_path, port=port, env=env)
    assert code == 3
    assert f"fhir-server export --from-ferretdb {tmp_path}" in output
    assert not (tmp_path / "fhir.sqlite3").exists()


@pytest.mark.process
@mongo_only
async def test_moving_a_ferretdb_data_dir_to_sqlite(tmp_path: Path) -> None:
    from tools.ferretdb.launcher import EmbeddedFerretDB

    old_dir = tmp_path / "old"
    with EmbeddedFerretDB(data_dir=old_dir) as ferret:  # what earlier versions left behind
        old = Store(data_dir=old_dir, mongo_uri=ferret.uri, database="fhir")
        made = await fill(old)
        before = await snapshot(old, made)
    out = tmp_path / "export"
    moved = cli(Store(data_dir=old_dir), "export", "--from-ferretdb", str(old_dir), "--out",
                str(out), "--history")
    assert moved.returncode == 0, moved.stderr[-2000:]
    (old_dir / "ferretdb").rename(old_dir / "ferretdb.old")
    target = Store(data_dir=old_dir)
    assert cli(target, "load", "--init", "--quiet", str(out)).returncode == 0
    assert await snapshot(target, made) == before
