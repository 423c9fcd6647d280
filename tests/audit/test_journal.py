"""AuditEvents queued when the server is killed are written at the next start (journal)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import httpx
import pytest

from tests.conftest import Store, mint_for_database, server_process
from tests.factories import patient

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL")
READS = 15
# Nothing is flushed on its own while the first process runs: the kill finds every event queued.
HOLD = {"FHIR_AUDIT_FLUSH_SECONDS": "60", "FHIR_AUDIT_BATCH": "100000"}


async def read_then_kill(store: Store, journal: bool) -> str:
    with server_process(store, FHIR_AUDIT_JOURNAL=str(journal).lower(), **HOLD) as server:
        token = await mint_for_database(store, server.base)
        async with httpx.AsyncClient(base_url=server.base + "/",
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            created = (await http.post("Patient", json=patient())).json()
            for _ in range(READS):
                assert (await http.get(f"Patient/{created['id']}")).status_code == 200
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=15)
    return str(created["id"])


async def audited_reads(store: Store, patient_id: str) -> int:
    with server_process(store) as server:
        token = await mint_for_database(store, server.base, "system/AuditEvent.rs")
        async with httpx.AsyncClient(base_url=server.base + "/",
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            total = 0
            for _ in range(30):  # the replay is written by the background writer
                page: dict[str, Any] = (await http.get("AuditEvent", params={
                    "entity": f"Patient/{patient_id}", "subtype": "read",
                    "_summary": "count"})).json()
                total = int(page["total"])
                if total >= READS:
                    break
                await asyncio.sleep(0.2)
            return total


async def test_killed_process_events_are_written_at_restart(store: Store) -> None:
    patient_id = await read_then_kill(store, journal=True)
    assert await audited_reads(store, patient_id) == READS
    assert not list((store.data_dir / "audit-journal").glob("*.jsonl"))  # replayed, removed


async def test_without_the_journal_they_are_lost(store: Store) -> None:
    patient_id = await read_then_kill(store, journal=False)
    assert await audited_reads(store, patient_id) == 0
