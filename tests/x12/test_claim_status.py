"""Claim status (276/277, issue 29 item 4): a claim sent over X12 with no 835 after
FHIR_CLAIM_STATUS_DAYS is asked about by the poll. The loopback clearinghouse checks the
276's envelope with pyx12 (which indexes no 005010X212 map) and answers it with a 277; what
it says is recorded on the
claim's ClaimResponse (a new version), the 276 and 277 are kept, and a denial opens a
work-denial Task; a pending answer opens none. A claim asked about waits as many days
before the next question."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.operations.claim_status_step import inquire_once
from fhir_server.operations.x12_poll import poll_once
from tests.workflow.helpers import WORKLIST
from tests.x12.test_x12_payer import configure, received
from tests.x12.world import submitted

pytestmark = pytest.mark.process


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # Ask about every claim that waits at all: a test cannot wait the 21 days.
    return {"fhir_billing_provider": "Organization/clinic", "fhir_payer_read_timeout": 20.0,
            "fhir_claim_status_days": 0}


async def poll(app: FastAPI) -> Any:
    return await poll_once(repo=app.state.repo, settings=app.state.settings,
                           x12=app.state.services.x12)


@pytest.mark.parametrize("status", ["P1:20", "F2:85"])
async def test_a_claim_waiting_for_its_payer_is_asked_about(
        app: FastAPI, client: httpx.AsyncClient, clearinghouse: str, status: str) -> None:
    done = await submitted(client, clearinghouse)
    claim = done["claim"]
    await configure(clearinghouse, claim_status={claim["id"]: status})
    [response] = (await client.get("ClaimResponse", params={
        "request": f"Claim/{claim['id']}"})).json()["entry"]
    before = response["resource"]
    assert before["outcome"] == "queued"

    summary = await poll(app)
    assert summary.asked == [f"ClaimResponse/{before['id']}"]
    [inquiry] = [m for m in await received(clearinghouse) if m["kind"] == "276"]
    assert inquiry["valid"], inquiry.get("errors")
    segments = [s.split("*") for s in inquiry["text"].replace("\n", "").split("~") if s]
    assert ["TRN", "1", claim["id"]] in segments and ["REF", "EJ", claim["id"]] in segments
    assert next(s for s in segments if s[:2] == ["NM1", "IL"])[-1] == "M100"

    after = (await client.get(f"ClaimResponse/{before['id']}")).json()
    assert after["outcome"] == "queued"
    # The round applied the clearinghouse's 277CA (a version), then recorded the 277.
    history = (await client.get(f"ClaimResponse/{before['id']}/_history")).json()["entry"]
    assert history[0]["resource"]["meta"]["versionId"] == after["meta"]["versionId"]
    assert status not in history[1]["resource"].get("disposition", "")
    assert status in after["disposition"] and status in after["processNote"][-1]["text"]
    kept = (await client.get("DocumentReference", params={
        "related": f"ClaimResponse/{before['id']}"})).json()["entry"]
    kinds = {e["resource"]["type"]["coding"][0]["code"] for e in kept}
    assert {"276", "277"} <= kinds, kinds
    tasks = (await client.get("Task", params={"code": f"{WORKLIST}|work-denial",
                                              "focus": f"Claim/{claim['id']}"})).json()
    if status.startswith("F2"):
        [task] = [e["resource"] for e in tasks["entry"]]
        assert task["identifier"][0]["value"] == "claim-status"
        assert "denied" in task["statusReason"]["text"] and status in task["statusReason"]["text"]
    else:
        assert tasks.get("entry", []) == []

    # Just asked: with a wait of a day, the next round asks nothing.
    waiting = app.state.settings.model_copy(update={"fhir_claim_status_days": 1})
    assert await inquire_once(repo=app.state.repo, settings=waiting,
                              x12=app.state.services.x12) == []
