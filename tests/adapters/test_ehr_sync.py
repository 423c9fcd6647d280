"""Pulling from an EHR: a second server process is the EHR (SMART on, the clinic
registered there as a backend client with its JWKS), Synthea data loaded into it; the
clinic syncs, the EHR changes, the clinic syncs again; an EHR killed mid-sync."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.adapters.ehr_fhir import DEFAULT_SCOPE, SYNC_TYPES
from fhir_server.adapters.records import records
from tests.support.server_process import ServerProcess, free_port, server_env, server_process
from tests.support.store import ROOT, Store, StoreFactory, mint_for_database
from tools.data_sets import SYNTHEA_BULK as BULK

CLINIC_CLIENT = "clinic-ehr-client"
ENCOUNTERS = 60


@pytest.fixture
def clinic_key(tmp_path: Path) -> tuple[Path, Path]:
    private_file, public_file = tmp_path / "clinic.jwk", tmp_path / "clinic-public.jwks"
    made = subprocess.run([sys.executable, "-m", "fhir_server", "keys", "client", "--out",
                           str(private_file)], cwd=ROOT, check=True, capture_output=True,
                          text=True)
    public_file.write_text(made.stdout)
    return private_file, public_file


@pytest.fixture
def settings_overrides(clinic_key: tuple[Path, Path]) -> dict[str, object]:
    return {"fhir_client_key_file": clinic_key[0], "fhir_ehr_page_size": 20,
            "fhir_payer_retries": 1, "fhir_payer_connect_timeout": 1.0,
            "fhir_payer_read_timeout": 5.0, "fhir_ehr_sync_interval": 0.5}


@pytest.fixture
def ehr_db(new_store: StoreFactory) -> Iterator[Store]:
    """The EHR's own store."""
    store = new_store()
    yield store
    asyncio.run(store.drop())


@pytest.fixture
def ehr(ehr_db: Store, clinic_key: tuple[Path, Path],
        tmp_path: Path) -> Iterator[ServerProcess]:
    """The EHR: this server in its own process, SMART on, the clinic a backend client,
    Synthea's practitioners, organizations, locations, patients and some encounters in it."""
    env = server_env(ehr_db, free_port())
    subprocess.run([sys.executable, "-m", "fhir_server", "clients", "add", "--name", "Clinic",
                    "--id", CLINIC_CLIENT, "--jwks-file", str(clinic_key[1]),
                    "--scope", DEFAULT_SCOPE, "--init"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    with server_process(ehr_db, stop_timeout=15) as server:
        data = tmp_path / "synthea"
        data.mkdir()
        for name in ("Organization", "Location", "Practitioner", "Patient"):
            (data / f"{name}.ndjson").write_text((BULK / f"{name}.ndjson").read_text())
        lines = (BULK / "Encounter.ndjson").read_text().splitlines()[:ENCOUNTERS]
        (data / "Encounter.ndjson").write_text("\n".join(lines) + "\n")
        token = asyncio.run(mint_for_database(ehr_db, server.base))
        subprocess.run([sys.executable, "-m", "fhir_server", "load", str(data), "--url",
                        server.base, "--token", token, "--quiet"], cwd=ROOT, check=True,
                       capture_output=True)
        yield server


async def ehr_admin(db: Store, base: str) -> httpx.AsyncClient:
    token = await mint_for_database(db, base)
    return httpx.AsyncClient(base_url=base + "/", timeout=30, headers={
        "Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})


async def all_of(http: httpx.AsyncClient, type_: str) -> list[dict[str, Any]]:
    out, url = [], f"{type_}?_count=1000"
    while url:
        page = (await http.get(url)).json()
        out += [e["resource"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page.get("link", [])
                    if link["relation"] == "next"), None)
    return out


async def endpoint_for(client: httpx.AsyncClient, base: str, *, scheduled: bool = False) -> str:
    marker = [{"url": "https://fhir-rcm-server.org/StructureDefinition/endpoint-ehr-sync",
               "valueBoolean": True}] if scheduled else []
    r = await client.post("Endpoint", json={
        "resourceType": "Endpoint", "status": "active", "address": base,
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "hl7-fhir-rest"},
        "payloadType": [{"text": "FHIR R4"}],
        "extension": [{"url": "https://fhir-rcm-server.org/StructureDefinition/endpoint-oauth2",
                       "extension": [{"url": "clientId", "valueString": CLINIC_CLIENT}]},
                      *marker]})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def results(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for result in answer["parameter"]:
        parts = {p["name"]: next(v for k, v in p.items() if k.startswith("value"))
                 for p in result["part"]}
        out[parts["type"]] = parts
    return out


def as_synced(resource: dict[str, Any], base: str, ids: dict[str, str]) -> dict[str, Any]:
    """What the clinic should hold for an EHR resource: its content, references mapped
    through ``ids`` (EHR Type/id -> clinic Type/id), the EHR id as an identifier."""
    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            ref = out.get("reference")
            if isinstance(ref, str) and ref in ids:
                out["reference"] = ids[ref]
            elif isinstance(ref, str) and "/" in ref:
                del out["reference"]
                out.setdefault("type", ref.split("/")[0])
                out.setdefault("identifier", {"system": base, "value": ref.split("/")[1]})
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value
    body = walk({k: v for k, v in resource.items() if k not in ("id", "meta")})
    body["identifier"] = [*body.get("identifier", []), {"system": base,
                                                       "value": resource["id"]}]
    return body


@pytest.mark.slow
@pytest.mark.process
async def test_sync_change_and_sync_again(app: FastAPI, client: httpx.AsyncClient,
                                          ehr: ServerProcess, ehr_db: Store,
                                          store: Store,
                                          clinic_key: tuple[Path, Path]) -> None:
    endpoint_id = await endpoint_for(client, ehr.base)
    r = await client.post(f"Endpoint/{endpoint_id}/$sync", json={"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    first = results(r.json())
    async with await ehr_admin(ehr_db, ehr.base) as source:
        theirs = {t: await all_of(source, t) for t in SYNC_TYPES}
        for type_ in SYNC_TYPES:
            assert first[type_]["created"] == len(theirs[type_]), type_
            assert first[type_]["failed"] == 0
        ids = await assert_same(client, theirs, ehr.base)
        # The EHR changes two patients and gains a practitioner.
        for patient in theirs["Patient"][:2]:
            changed = {**patient, "name": [{"family": "Renamed", "given": ["Changed"]}]}
            assert (await source.put(f"Patient/{patient['id']}", json=changed)).status_code == 200
        added = await source.post("Practitioner", json={
            "resourceType": "Practitioner", "name": [{"family": "Newcomer"}]})
        assert added.status_code == 201
        # The second sync by the command line, as a scheduler would run it.
        env = {**server_env(store, free_port()),
               "FHIR_CLIENT_KEY_FILE": str(clinic_key[0]), "FHIR_EHR_PAGE_SIZE": "20",
               "FHIR_LOG_LEVEL": "WARNING"}
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "fhir_server", "ehr", "sync", endpoint_id],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        second = {}
        for line in done.stdout.splitlines():
            parts = dict(p.split("=", 1) for p in line.split())
            second[parts["type"]] = {k: int(v) for k, v in parts.items()
                                     if k in ("created", "updated", "unchanged", "failed")}
        assert (second["Patient"]["created"], second["Patient"]["updated"]) == (0, 2)
        assert (second["Practitioner"]["created"], second["Practitioner"]["updated"]) == (1, 0)
        assert second["Encounter"]["created"] == second["Encounter"]["updated"] == 0
        for patient in theirs["Patient"][:2]:
            now = (await source.get(f"Patient/{patient['id']}")).json()
            mine = (await client.get(ids[f"Patient/{patient['id']}"])).json()
            assert mine["name"] == now["name"]
            assert mine["meta"]["versionId"] == "2"
    assert await count_all(client, "Practitioner") == len(theirs["Practitioner"]) + 1


async def count_all(client: httpx.AsyncClient, type_: str) -> int:
    return int((await client.get(type_, params={"_summary": "count"})).json()["total"])


@pytest.mark.slow
@pytest.mark.process
async def test_ehr_dying_mid_sync_resumes_from_the_last_committed_page(
        app: FastAPI, client: httpx.AsyncClient, ehr: ServerProcess, ehr_db: Store) -> None:
    endpoint_id = await endpoint_for(client, ehr.base)
    state = records(app.state.repo, "ehr-sync")
    body = {"resourceType": "Parameters", "parameter": [{"name": "type",
                                                         "valueCode": "Encounter"}]}
    sync = asyncio.create_task(client.post(f"Endpoint/{endpoint_id}/$sync", json=body))
    while not ((await state.get(f"Endpoint/{endpoint_id}")) or {}).get("watermarks"):
        assert not sync.done(), (await sync).text
        await asyncio.sleep(0.02)
    ehr.kill()  # the EHR dies after at least one committed page
    failed = await sync
    assert failed.status_code in (502, 504), failed.text
    mark = (await state.get(f"Endpoint/{endpoint_id}"))["watermarks"]["Encounter"]
    stored = await all_of(client, "Encounter")
    assert 0 < len(stored) < ENCOUNTERS
    # The watermark is where the last committed page ended: its newest resource.
    assert mark == max(e["meta"]["lastUpdated"] for e in await ehr_encounters(
        ehr_db, ehr, stored))

    with server_process(ehr_db, port=ehr.port, stop_timeout=15):
        r = await client.post(f"Endpoint/{endpoint_id}/$sync", json=body)
        assert r.status_code == 200, r.text
        done = results(r.json())["Encounter"]
        assert done["failed"] == 0
        assert done["created"] == ENCOUNTERS - len(stored)
        mine = await all_of(client, "Encounter")
        keys = [next(i["value"] for i in e["identifier"] if i["system"] == ehr.base)
                for e in mine]
        assert len(keys) == len(set(keys)) == ENCOUNTERS  # nothing lost, nothing twice


async def ehr_encounters(db: Store, ehr: ServerProcess,
                         stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The EHR's versions of the encounters the clinic stored, read from the EHR's database
    through a fresh server process (the first one is dead)."""
    with server_process(db, stop_timeout=15) as server:
        async with await ehr_admin(db, server.base) as source:
            out = []
            for e in stored:
                ehr_id = next(i["value"] for i in e["identifier"] if i["system"] == ehr.base)
                out.append((await source.get(f"Encounter/{ehr_id}")).json())
            return out


@pytest.mark.process
async def test_marked_endpoints_are_synced_periodically(
        app: FastAPI, client: httpx.AsyncClient, ehr: ServerProcess, ehr_db: Store) -> None:
    async with await ehr_admin(ehr_db, ehr.base) as source:
        patients = len(await all_of(source, "Patient"))
        encounters = len(await all_of(source, "Encounter"))
    endpoint_id = await endpoint_for(client, ehr.base, scheduled=True)
    state = records(app.state.repo, "ehr-sync")
    for _ in range(600):  # the schedule (every 0.5 s) picks the marked Endpoint up
        marks = ((await state.get(f"Endpoint/{endpoint_id}")) or {}).get("watermarks", {})
        if "Encounter" in marks and await count_all(client, "Encounter") == encounters:
            break
        await asyncio.sleep(0.2)
    assert await count_all(client, "Patient") == patients
    assert await count_all(client, "Encounter") == encounters


async def assert_same(client: httpx.AsyncClient, theirs: dict[str, list[dict[str, Any]]],
                      base: str) -> dict[str, str]:
    """Every EHR resource is here once, with the EHR's content; returns the id mapping."""
    ours = {t: await all_of(client, t) for t in SYNC_TYPES}
    ids, by_ehr_id = {}, {}
    for type_ in SYNC_TYPES:
        for mine in ours[type_]:
            ehr_id = next(i["value"] for i in mine["identifier"] if i["system"] == base)
            assert f"{type_}/{ehr_id}" not in ids, "stored twice"
            ids[f"{type_}/{ehr_id}"] = f"{type_}/{mine['id']}"
            by_ehr_id[f"{type_}/{ehr_id}"] = mine
    for type_ in SYNC_TYPES:
        assert len(ours[type_]) == len(theirs[type_]), type_
        for resource in theirs[type_]:
            mine = by_ehr_id[f"{type_}/{resource['id']}"]
            assert {k: v for k, v in mine.items() if k not in ("id", "meta")} == \
                as_synced(resource, base, ids), (type_, resource["id"])
    return ids


@pytest.mark.slow
@pytest.mark.process
async def test_bulk_sync_with_export(app: FastAPI, client: httpx.AsyncClient,
                                     ehr: ServerProcess, ehr_db: Store) -> None:
    endpoint_id = await endpoint_for(client, ehr.base)
    bulk = {"resourceType": "Parameters", "parameter": [{"name": "bulk", "valueBoolean": True}]}
    r = await client.post(f"Endpoint/{endpoint_id}/$sync", json=bulk)
    assert r.status_code == 200, r.text
    first = results(r.json())
    async with await ehr_admin(ehr_db, ehr.base) as source:
        theirs = {t: await all_of(source, t) for t in SYNC_TYPES}
        for type_ in SYNC_TYPES:
            assert first[type_]["created"] == len(theirs[type_]), type_
        await assert_same(client, theirs, ehr.base)
        patient = theirs["Patient"][0]
        changed = {**patient, "gender": "other" if patient.get("gender") != "other" else "male"}
        assert (await source.put(f"Patient/{patient['id']}", json=changed)).status_code == 200
        r = await client.post(f"Endpoint/{endpoint_id}/$sync", json=bulk)
        assert r.status_code == 200, r.text
        second = results(r.json())
        # Only what changed since the first export's transactionTime was exported again.
        assert second["Patient"]["updated"] == 1
        assert sum(second[t]["created"] + second[t]["unchanged"] for t in SYNC_TYPES) == 0
        theirs["Patient"] = await all_of(source, "Patient")
        await assert_same(client, theirs, ehr.base)
