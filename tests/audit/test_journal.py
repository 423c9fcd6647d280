"""AuditEvents queued when the server is killed are written at the next start (journal)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import httpx
import pytest

from tests.factories import patient
from tests.support.server_process import server_process, stop_process
from tests.support.store import HTTP_TIMEOUT, Store, mint_for_database

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL")
READS = 15
# Nothing is flushed on its own while the first process runs: the kill finds every event queued.
HOLD = {"FHIR_AUDIT_FLUSH_SECONDS": "60", "FHIR_AUDIT_BATCH": "100000"}


async def read_then_kill(store: Store, journal: bool) -> str:
    with server_process(store, FHIR_AUDIT_JOURNAL=str(journal).lower(), **HOLD) as server:
        token = await mint_for_database(store, server.base)
        async with httpx.AsyncClient(base_url=server.base + "/", timeout=HTTP_TIMEOUT,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            created = (await http.post("Patient", json=patient())).json()
            for _ in range(READS):
                assert (await http.get(f"Patient/{created['id']}")).status_code == 200
        stop_process(server.proc, signal.SIGKILL)
    return str(created["id"])


async def audited_reads(store: Store, patient_id: str) -> int:
    """The reads of ``patient_id`` audited once the restarted server wrote its queue's head.

    A replayed journal is queued at start, before any request's event, and the queue is
    written in order: once this process's own searches are stored, the replay is too.
    """
    with server_process(store) as server:
        token = await mint_for_database(store, server.base, "system/AuditEvent.rs")
        async with httpx.AsyncClient(base_url=server.base + "/", timeout=HTTP_TIMEOUT,
                                     headers={"Authorization": f"Bearer {token}"}) as http:

            async def count(**params: str) -> int:
                page: dict[str, Any] = (await http.get("AuditEvent", params={
                    **params, "_summary": "count"})).json()
                return int(page["total"])

            deadline = time.monotonic() + HTTP_TIMEOUT
            while await count(subtype="search-type") == 0:  # none yet of this process's own
                assert time.monotonic() < deadline, "the audit writer wrote nothing"
                await asyncio.sleep(0.2)
            return await count(entity=f"Patient/{patient_id}", subtype="read")


@pytest.mark.slow
@pytest.mark.process
async def test_killed_process_events_are_written_at_restart(store: Store) -> None:
    patient_id = await read_then_kill(store, journal=True)
    assert await audited_reads(store, patient_id) == READS
    assert not list((store.data_dir / "audit-journal").glob("*.jsonl"))  # replayed, removed


@pytest.mark.slow
@pytest.mark.process
async def test_without_the_journal_they_are_lost(store: Store) -> None:
    patient_id = await read_then_kill(store, journal=False)
    assert await audited_reads(store, patient_id) == 0
