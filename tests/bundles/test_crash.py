"""A server killed with SIGKILL mid-transaction: after a restart each Bundle is all there or absent."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

import httpx
import pytest

from tests.bundles.helpers import bundle, post, response_entries, status_code, urn
from tests.factories import AMB
from tests.support.server_process import launch
from tests.support.store import HTTP_TIMEOUT, Store, mint_for_database

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL")

TAGS = "http://test.example/crash"
BUNDLES = 40
ENCOUNTERS = 10
OBSERVATIONS = 9  # with the Patient, 20 resources a Bundle
EXPECTED = {"Patient": 1, "Encounter": ENCOUNTERS, "Observation": OBSERVATIONS}


def crash_bundle(k: int) -> dict[str, Any]:
    meta = {"tag": [{"system": TAGS, "code": f"bundle-{k}"}]}
    pat = urn()
    entries = [post({"resourceType": "Patient", "meta": meta,
                     "identifier": [{"system": TAGS, "value": f"bundle-{k}"}],
                     "name": [{"family": f"Crash{k}", "given": ["Test"]}]}, pat)]
    encs = [urn() for _ in range(ENCOUNTERS)]
    for i, enc in enumerate(encs):
        entries.append(post({"resourceType": "Encounter", "meta": meta, "status": "finished",
                             "class": AMB, "subject": {"reference": pat},
                             "period": {"start": f"2024-01-{i + 1:02d}T10:00:00Z"}}, enc))
    for i in range(OBSERVATIONS):
        entries.append(post({"resourceType": "Observation", "meta": meta, "status": "final",
                             "code": {"text": "heart rate"}, "subject": {"reference": pat},
                             "encounter": {"reference": encs[i]},
                             "valueQuantity": {"value": 60 + i, "unit": "/min"}}, urn()))
    return bundle(entries)


async def auth_headers(store: Store, base: str) -> dict[str, str]:
    """An admin token the server at ``base`` accepts (minted on its database)."""
    return {"Authorization": f"Bearer {await mint_for_database(store, base)}"}


async def counts(http: httpx.AsyncClient, base: str, k: int) -> dict[str, int]:
    out = {}
    for type_ in EXPECTED:
        resp = await http.get(f"{base}/{type_}",
                              params={"_tag": f"{TAGS}|bundle-{k}", "_summary": "count"})
        assert resp.status_code == 200, resp.text
        out[type_] = int(resp.json()["total"])
    return out


@pytest.mark.slow
@pytest.mark.process
async def test_sigkill_mid_transaction_leaves_bundles_whole_or_absent(
        store: Store) -> None:
    server = launch(store)
    base = server.base
    outcomes: dict[int, int | str] = {}
    try:
        server.wait_ready()
        limits = httpx.Limits(max_connections=BUNDLES + 5)
        auth = await auth_headers(store, base)
        async with httpx.AsyncClient(timeout=300, limits=limits, headers=auth) as http:
            first_done = asyncio.Event()

            async def fire(k: int) -> None:
                try:
                    resp = await http.post(f"{base}/", json=crash_bundle(k),
                                           headers={"Content-Type": "application/fhir+json"})
                    outcomes[k] = resp.status_code
                    if resp.status_code == 200:
                        entries = response_entries(resp, "transaction")
                        assert len(entries) == 1 + ENCOUNTERS + OBSERVATIONS
                        assert all(status_code(e) == 201 for e in entries)
                except httpx.TransportError as exc:
                    outcomes[k] = type(exc).__name__
                except BaseException:
                    outcomes[k] = "error"
                    raise
                finally:
                    if outcomes[k] == 200 or len(outcomes) == BUNDLES:
                        first_done.set()

            fired = time.monotonic()
            tasks = [asyncio.create_task(fire(k)) for k in range(BUNDLES)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_done.wait(), timeout=120)
            server.kill()
            print(f"killed {time.monotonic() - fired:.1f} s after firing, "
                  f"{len(outcomes)} answered")
            await asyncio.gather(*tasks)
    finally:
        server.kill()

    committed_before_kill = [k for k, v in outcomes.items() if v == 200]
    cut_off = [k for k, v in outcomes.items() if isinstance(v, str)]
    refused = {k: v for k, v in outcomes.items() if isinstance(v, int) and v != 200}
    assert cut_off, f"the kill came after every request had finished: {outcomes}"

    # Recovery after the crash runs before the server reports ready.
    restart = time.monotonic()
    server = launch(store)
    base = server.base
    try:
        server.wait_ready(600)
        restart_seconds = time.monotonic() - restart
        auth = await auth_headers(store, base)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT * 2, headers=auth) as http:
            complete, absent, partial = [], [], {}
            for k in range(BUNDLES):
                try:
                    got = await counts(http, base, k)
                except httpx.TransportError as exc:  # say whether the server is still there
                    raise AssertionError(f"the restarted server on port {server.port} did not "
                                         f"answer (Bundle {k}; exit code {server.proc.poll()}): "
                                         f"{exc!r}\n{server.output()}") from exc
                if got == EXPECTED:
                    complete.append(k)
                elif not any(got.values()):
                    absent.append(k)
                else:
                    partial[k] = got
            assert not partial, f"Bundles partly present after the restart: {partial}"
            assert complete, "no Bundle committed before the kill"
            missing = [k for k in committed_before_kill if k not in complete]
            assert not missing, f"Bundles answered 200 but lost: {missing}"
            assert not [k for k in refused if k in complete], refused

            # No remnant of the absent Bundles in history either.
            for type_, n in EXPECTED.items():
                resp = await http.get(f"{base}/{type_}/_history")
                assert resp.status_code == 200
                assert int(resp.json()["total"]) == n * len(complete), type_
            resp = await http.get(f"{base}/_history")
            assert int(resp.json()["total"]) == sum(EXPECTED.values()) * len(complete)

            # The references of a committed Bundle point inside it.
            k = complete[0]
            found = await http.get(f"{base}/Patient", params={"identifier": f"{TAGS}|bundle-{k}"})
            pid = found.json()["entry"][0]["resource"]["id"]
            resp = await http.get(f"{base}/Encounter",
                                  params={"subject": f"Patient/{pid}", "_summary": "count"})
            assert int(resp.json()["total"]) == ENCOUNTERS

            # The server takes new transactions after the restart.
            again = await http.post(f"{base}/", json=crash_bundle(BUNDLES),
                                    headers={"Content-Type": "application/fhir+json"})
            entries = response_entries(again, "transaction")
            assert len(entries) == 1 + ENCOUNTERS + OBSERVATIONS
            assert await counts(http, base, BUNDLES) == EXPECTED
            print(f"committed before kill: {len(committed_before_kill)}, cut off: {len(cut_off)}, "
                  f"complete after restart: {len(complete)}, absent: {len(absent)}, "
                  f"restart took {restart_seconds:.1f} s")
    finally:
        if server.proc.poll() is None:
            server.stop()
