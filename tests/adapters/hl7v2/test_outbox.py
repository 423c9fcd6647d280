"""An HL7 v2 message's writes append their events like every other write path."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from fhir_server.storage.repository import Repository
from tests.adapters.hl7v2.helpers import adt, gt1, in1, mllp
from tests.support.history import versions_listed


async def test_an_a04_appends_one_event_per_version_it_wrote(
        app: FastAPI, port: int, client: httpx.AsyncClient) -> None:
    repo: Repository = app.state.repo
    before = await versions_listed(client)
    mark = await repo.last_event()
    async with mllp(port) as conn:
        ack = await conn.send(adt("A04", mrn="M2001", visit="6001", insurance=[in1()],
                                  guarantor=gt1()))
    assert ack.code == "AA", ack.text
    written = await versions_listed(client) - before
    events = await repo.events(after=mark, limit=100)
    types = {ref.split("/")[0] for ref, _ in written}
    assert {"Patient", "Encounter", "Coverage"} <= types
    assert sorted((e.reference, e.version) for e in events) == sorted(written)
