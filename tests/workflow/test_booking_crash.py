"""Bookings in flight when the server is killed (SIGKILL): after a restart, every booked
Appointment has exactly one draft Invoice and every draft Invoice its Appointment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

import httpx
import pytest

from tests.factories import patient
from tests.support.server_process import server_process, stop_process
from tests.support.store import HTTP_TIMEOUT, Store, mint_for_database
from tests.workflow.helpers import body, create

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL")
BOOKINGS = 30
HEADERS = {"Content-Type": "application/fhir+json"}


def booking(patient_ref: str, practitioner_ref: str) -> dict[str, Any]:
    return {"resourceType": "Appointment", "status": "booked",
            "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:30:00Z",
            "participant": [{"actor": {"reference": patient_ref}, "status": "accepted"},
                            {"actor": {"reference": practitioner_ref}, "status": "accepted"}]}


async def all_of(http: httpx.AsyncClient, type_: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    url: str | None = f"{type_}?_count=500"
    while url:
        response = await http.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        out += [e["resource"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"),
                   None)
    return out


@pytest.mark.slow
@pytest.mark.process
async def test_booking_side_effects_survive_a_kill(store: Store) -> None:
    with server_process(store) as server:
        token = await mint_for_database(store, server.base)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.base + "/", timeout=HTTP_TIMEOUT,
                                     headers=headers) as http:
            pat = await create(http, patient())
            doctors = [await create(http, {"resourceType": "Practitioner",
                                           "name": [{"family": f"Doc{i}"}]})
                       for i in range(BOOKINGS)]
            first_done = asyncio.Event()

            async def book(doc: dict[str, Any]) -> None:
                with contextlib.suppress(httpx.TransportError):
                    r = await http.post("Appointment", headers=HEADERS, content=body(
                        booking(f"Patient/{pat['id']}", f"Practitioner/{doc['id']}")))
                    if r.status_code == 201:
                        first_done.set()

            tasks = [asyncio.create_task(book(d)) for d in doctors]
            await asyncio.wait_for(first_done.wait(), timeout=HTTP_TIMEOUT)
            os.kill(server.proc.pid, signal.SIGKILL)
            await asyncio.gather(*tasks)
            stop_process(server.proc, signal.SIGKILL)
    with server_process(store) as server:
        token = await mint_for_database(store, server.base)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.base + "/", timeout=HTTP_TIMEOUT,
                                     headers=headers) as http:
            appointments = await all_of(http, "Appointment")
            invoices = await all_of(http, "Invoice")
    print(f"appointments after the kill: {len(appointments)} of {BOOKINGS}")
    assert 1 <= len(appointments) <= BOOKINGS
    keys = [i["identifier"][0]["value"] for i in invoices]
    assert sorted(keys) == sorted(f"Appointment/{a['id']}" for a in appointments)
    assert all(i["status"] == "draft" for i in invoices)
