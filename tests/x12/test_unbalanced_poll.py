"""An 835 from the clearinghouse whose BPR02 does not equal its claim payments less its
provider adjustments is not posted: the poll keeps it (one DocumentReference) and opens one
failed post-remittance Task naming both amounts, however often the file is fetched; its
$retry fails again with the same reason (issue 28)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.operations.x12_poll import poll_once
from tests.x12.test_posting import remit_for, submitted
from tests.x12.test_x12_payer import queue


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic"}


async def count(client: httpx.AsyncClient, query: str) -> int:
    total: int = (await client.get(f"{query}&_summary=count" if "?" in query
                                   else f"{query}?_summary=count")).json()["total"]
    return total


async def tasks(client: httpx.AsyncClient) -> list[dict[str, object]]:
    bundle = (await client.get("Task?code=post-remittance")).json()
    return [e["resource"] for e in bundle.get("entry", [])]


@pytest.mark.process
async def test_an_unbalanced_835_from_the_clearinghouse_lands_on_the_worklist_once(
        app: FastAPI, client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await submitted(client, clearinghouse)
    good = remit_for(done["claim"], trace="EFT-BPR")
    bpr = next(s for s in good.split("~") if s.strip().startswith("BPR*"))
    expected = Decimal(bpr.split("*")[2])
    off = (expected / 7).quantize(Decimal("0.01"))
    total = expected + off
    text = good.replace(bpr, bpr.replace(f"BPR*I*{bpr.split('*')[2]}*", f"BPR*I*{total}*", 1))
    assert text != good
    state = app.state
    await poll_once(repo=state.repo, settings=state.settings, x12=state.services.x12)  # 277CA
    documents = await count(client, "DocumentReference?type=835")
    responses = (await client.get("ClaimResponse")).json().get("entry", [])

    for _ in range(2):  # offered and fetched twice: still one file kept, one Task
        await queue(clearinghouse, text)
        summary = await poll_once(repo=state.repo, settings=state.settings,
                                  x12=state.services.x12)
        assert not summary.applied and len(summary.refused) == 1, summary
        found = await tasks(client)
        assert len(found) == 1, found
        task = found[0]
        assert task["status"] == "failed"
        reason = str(task["statusReason"]["text"])  # type: ignore[index]
        assert f"{total:.2f}" in reason and f"{expected:.2f}" in reason, reason
        assert "corrected 835" in reason
        assert task["output"]
        assert await count(client, "DocumentReference?type=835") == documents + 1
        assert await count(client, "PaymentReconciliation") == 0
        assert (await client.get("ClaimResponse")).json().get("entry", []) == responses

    focus = task["focus"]["reference"]  # type: ignore[index]
    document = (await client.get(str(focus))).json()
    assert document["resourceType"] == "DocumentReference"

    r = await client.post(f"Task/{task['id']}/$retry")
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["status"] == "failed"
    assert again["statusReason"]["text"] == reason
    assert len(await tasks(client)) == 1
    assert await count(client, "PaymentReconciliation") == 0
