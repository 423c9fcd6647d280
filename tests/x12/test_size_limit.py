"""X12 files over FHIR_MAX_X12_BYTES are refused before they are read, whichever way they come
(the body of $import-835, a clearinghouse's outbox); the same 835 within the limit posts."""

from __future__ import annotations

import math

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.operations.x12_poll import poll_once
from tests.x12.test_posting import X12, remit_for, submitted
from tests.x12.test_x12_payer import queue

LIMIT = 4096  # FHIR_MAX_X12_BYTES: a few 835s' worth of the small ones these tests write


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic", "fhir_max_x12_bytes": LIMIT}


def spread(text: str, size: int) -> str:
    """The same interchange with line breaks after its segments (which X12 readers skip),
    at least ``size`` bytes long."""
    breaks = math.ceil(max(size - len(text), 0) / (2 * text.count("~")))
    out = text.replace("~", "~" + "\r\n" * breaks)
    assert len(out) >= size
    return out


async def remittances(client: httpx.AsyncClient) -> int:
    total: int = (await client.get("PaymentReconciliation?_summary=count")).json()["total"]
    return total


@pytest.mark.process
async def test_import_835_takes_the_file_within_the_limit_and_refuses_a_larger_one(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await submitted(client, clearinghouse)
    text = remit_for(done["claim"], trace="EFT-SIZE")
    assert len(text) < LIMIT
    over = spread(text, LIMIT + 1)
    r = await client.post("PaymentReconciliation/$import-835", content=over.encode(),
                          headers=X12)
    assert r.status_code == 413, r.text
    issue = r.json()["issue"][0]
    assert "FHIR_MAX_X12_BYTES" in issue["diagnostics"] and str(LIMIT) in issue["diagnostics"]
    assert await remittances(client) == 0
    within = spread(text, LIMIT - 2 * text.count("~"))  # line breaks too, and under the limit
    assert len(within) <= LIMIT
    r = await client.post("PaymentReconciliation/$import-835", content=within.encode(),
                          headers=X12)
    assert r.status_code == 200, r.text
    assert await remittances(client) == 1


@pytest.mark.process
async def test_a_clearinghouse_file_over_the_limit_is_refused_and_passed(
        app: FastAPI, client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await submitted(client, clearinghouse)
    text = remit_for(done["claim"], trace="EFT-POLL")
    await queue(clearinghouse, spread(text, LIMIT + 1))
    state = app.state
    summary = await poll_once(repo=state.repo, settings=state.settings, x12=state.services.x12)
    refused = [r for r in summary.refused if "FHIR_MAX_X12_BYTES" in r]
    assert len(refused) == 1, summary
    assert await remittances(client) == 0
    await queue(clearinghouse, text)  # the next file is read: the big one did not block it
    summary = await poll_once(repo=state.repo, settings=state.settings, x12=state.services.x12)
    assert not summary.refused and len(summary.applied) == 1, summary
    assert await remittances(client) == 1
