"""A file the X12 poll fetches but cannot apply lands on the worklist, never only in a log:
kept (one DocumentReference) with one failed post-remittance Task however often it is
fetched, the poll going on past it; ``$retry`` applies the kept file again, so an 835 from
a payer this server did not know is posted once the payer is stored. A file too large to
read is not kept: its Task names the clearinghouse's Endpoint and the file."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.operations.x12_poll import poll_once
from tests.x12.test_posting import broken

# The app of the unbalanced-835 tests.
from tests.x12.test_unbalanced_poll import count, settings_overrides, tasks  # noqa: F401
from tests.x12.test_x12_payer import queue
from tests.x12.world import PAYER_ID, PAYER_TIN, remit_for, setup_clinic
from tests.x12.world import submitted as claim_submitted

pytestmark = pytest.mark.process


async def poll(app: FastAPI) -> Any:
    state = app.state
    return await poll_once(repo=state.repo, settings=state.settings, x12=state.services.x12)


async def fetched_twice(app: FastAPI, client: httpx.AsyncClient, clearinghouse: str,
                        text: str) -> dict[str, Any]:
    """The file offered and fetched twice: refused each time, one Task, one file kept."""
    documents = await count(client, "DocumentReference")
    for _ in range(2):
        await queue(clearinghouse, text)
        summary = await poll(app)
        assert not summary.applied and len(summary.refused) == 1, summary
        found = await tasks(client)
        assert len(found) == 1, found
        assert found[0]["status"] == "failed"
        assert await count(client, "DocumentReference") == documents + 1
    return found[0]


async def test_an_835_from_an_unknown_payer_waits_and_is_posted_once_the_payer_is_stored(
        app: FastAPI, client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await claim_submitted(client, clearinghouse)
    await poll(app)  # the 277CA
    good = remit_for(done["claim"], trace="EFT-STRANGER")
    stranger = broken(good, f"REF*2U*{PAYER_ID}", "REF*2U*NOBODY")
    stranger = stranger.replace(f"*1{PAYER_TIN}", "*1000000000")
    task = await fetched_twice(app, client, clearinghouse, stranger)
    reason = str(task["statusReason"]["text"])
    assert "payer" in reason and "Nothing of this 835 is applied" in reason, reason
    kept = (await client.get(task["focus"]["reference"])).json()
    assert kept["resourceType"] == "DocumentReference"
    assert kept["type"]["coding"][0]["code"] == "835"
    assert await count(client, "PaymentReconciliation") == 0

    r = await client.post(f"Task/{task['id']}/$retry")  # the payer still unknown
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed" and r.json()["statusReason"]["text"] == reason

    payer = (await client.get(done["claim"]["insurer"]["reference"])).json()
    payer["identifier"] = [*payer.get("identifier", []), {"value": "NOBODY"}]
    r = await client.put(f"Organization/{payer['id']}", json=payer)
    assert r.status_code == 200, r.text
    r = await client.post(f"Task/{task['id']}/$retry")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed", r.json()
    outputs = [o["valueReference"]["reference"] for o in r.json()["output"]
               if "valueReference" in o]
    reconciliations = (await client.get("PaymentReconciliation")).json()["entry"]
    assert [f"PaymentReconciliation/{e['resource']['id']}" for e in reconciliations] == [
        o for o in outputs if o.startswith("PaymentReconciliation/")]
    assert len(reconciliations) == 1


async def test_a_file_that_is_not_x12_waits_with_its_reason_and_later_files_are_applied(
        app: FastAPI, client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await claim_submitted(client, clearinghouse)
    await poll(app)  # the 277CA
    task = await fetched_twice(app, client, clearinghouse, "hello, this is not X12")
    reason = str(task["statusReason"]["text"])
    assert "ISA" in reason and "Nothing of this 835 is applied" in reason, reason
    r = await client.post(f"Task/{task['id']}/$retry")
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text

    await queue(clearinghouse, remit_for(done["claim"], trace="EFT-AFTER"))
    summary = await poll(app)
    assert len(summary.applied) == 1 and not summary.refused, summary
    assert await count(client, "PaymentReconciliation") == 1


@pytest.mark.parametrize("settings_overrides", [{"fhir_max_x12_bytes": 2048}])
async def test_a_file_too_large_to_read_is_not_kept_and_its_task_names_it(
        app: FastAPI, client: httpx.AsyncClient, clearinghouse: str) -> None:
    world = await setup_clinic(client, clearinghouse)
    documents = await count(client, "DocumentReference")
    text = "ISA*" + "X" * 4096 + "~"
    await queue(clearinghouse, text)
    summary = await poll(app)
    assert not summary.applied and len(summary.refused) == 1, summary
    [task] = await tasks(client)
    assert task["status"] == "failed"
    assert task["focus"]["reference"] == world["endpoint"]
    reason = str(task["statusReason"]["text"])
    assert f"{len(text)} bytes" in reason and "2048" in reason, reason
    assert await count(client, "DocumentReference") == documents
    r = await client.post(f"Task/{task['id']}/$retry")
    assert r.status_code == 422, r.text
