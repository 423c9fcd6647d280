"""SIGTERM while a slow request is in flight: /ready answers 503 at once while requests are
still served (FHIR_SHUTDOWN_DRAIN_SECONDS), the slow request finishes, the audit queue is
flushed (its AuditEvent is in the database, the journal is empty) and the process exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from fhir_server.main import create_app
from tests.observability.helpers import check_eligibility, insured_patient
from tests.observability.peers import loopback_payer
from tests.support.server_process import server_process
from tests.support.store import (
    HTTP_TIMEOUT,
    STOP_TIMEOUT,
    Store,
    fhir_client,
    make_settings,
    mint,
    mint_for_database,
)

DRAIN = 2.0
PAYER_DELAY = 6.0  # the slow request: the payer's answer comes after the drain


async def _wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def stored_audit_events(store: Store) -> int:
    """AuditEvents in the database, read by a fresh app that replays no journal."""
    app = create_app(make_settings(store, fhir_audit_journal=False))
    async with app.router.lifespan_context(app):
        http = fhir_client(app, await mint(app, "system/AuditEvent.rs"))
        async with http:
            found = await http.get("AuditEvent", params={"_summary": "count"})
        assert found.status_code == 200, found.text
        total: int = found.json()["total"]
        return total


@pytest.mark.slow
@pytest.mark.process
async def test_sigterm_lets_the_request_in_flight_finish(store: Store, tmp_path: Path) -> None:
    env = {"FHIR_SHUTDOWN_DRAIN_SECONDS": str(DRAIN), "FHIR_SHUTDOWN_GRACE_SECONDS": "30",
           "FHIR_PAYER_READ_TIMEOUT": "30", "FHIR_PAYER_RETRIES": "0"}
    with (loopback_payer(delay=PAYER_DELAY) as payer,
          server_process(store, log=tmp_path / "log", **env) as run):
        token = await mint_for_database(store, run.base)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        async with httpx.AsyncClient(base_url=run.base + "/", headers=headers,
                                     timeout=HTTP_TIMEOUT) as http:
            insured = await insured_patient(http, payer.base)  # four creates
            slow = asyncio.create_task(check_eligibility(http, insured.coverage_id))
            await _wait_for(lambda: payer.headers, timeout=HTTP_TIMEOUT)  # it is in flight
            sent = time.monotonic()
            run.proc.send_signal(signal.SIGTERM)
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as probe:
                # Readiness fails first, while the server still answers.
                ready = await probe.get(f"{run.root}/ready")
                assert ready.status_code == 503 and ready.json() == {"status": "stopping"}
                assert (await probe.get(f"{run.root}/health")).status_code == 200
                assert (await probe.get(f"{run.base}/metadata")).status_code == 200
                assert time.monotonic() - sent < DRAIN
            answer = await slow
            assert answer.status_code == 200, answer.text
            assert answer.json()["resourceType"] == "CoverageEligibilityResponse"
            assert time.monotonic() - sent >= PAYER_DELAY - 1  # it did wait for the payer
        run.exit_code = await asyncio.to_thread(run.proc.wait, STOP_TIMEOUT)
    assert run.exit_code == 0
    # The audit queue was written before the exit: nothing left in the journal.
    assert not list((store.data_dir / "audit-journal").glob("*.jsonl"))
    assert await stored_audit_events(store) == 5  # four creates and the eligibility check
