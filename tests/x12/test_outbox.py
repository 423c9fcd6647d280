"""An 835 imported over X12 appends one event per version it wrote, with the journeys it
belongs to: the payer's answer and the payment posted."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.events.topics import topics_of
from fhir_server.storage.repository import Repository
from tests.support.history import versions_listed
from tests.x12.world import X12, remit_for, submitted


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic"}


@pytest.mark.process
async def test_an_835_appends_its_events_with_their_journeys(
        app: FastAPI, client: httpx.AsyncClient, clearinghouse: str) -> None:
    repo: Repository = app.state.repo
    done = await submitted(client, clearinghouse)
    before = await versions_listed(client)
    mark = await repo.last_event()
    r = await client.post("PaymentReconciliation/$import-835",
                          content=remit_for(done["claim"], trace="EFT-OUTBOX").encode(),
                          headers=X12)
    assert r.status_code == 200, r.text
    written = await versions_listed(client) - before
    events = await repo.events(after=mark, limit=100)
    assert sorted((e.reference, e.version) for e in events) == sorted(written)
    topics = {t for e in events for t in await topics_of(repo, e)}
    assert {"claim-response", "payment-posted"} <= topics
