"""FHIR_WORKERS: several server processes on one port and one database, under load.

Two workers take 10,000 requests from 8 clients (creates, reads, searches, racing
updates of one resource, racing bookings of one practitioner); every update gets its
own version, one booking wins, and after a clean stop every request has its
AuditEvent (each worker flushed its queue)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.runtime.exit_codes import EXIT_STARTUP_FAILURE
from tests.factories import patient
from tests.support.server_process import children, launch, server_process
from tests.support.store import ENGINE, Store, mint_for_database

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")

CLIENTS = 8
# Requests under load: on FerretDB (which scans a collection for every search and writes
# an AuditEvent per request the same way) 10,000 took 3 minutes of the suite; 2,000 there
# still keep both workers busy from eight clients for half a minute.
REQUESTS = 10_000 if ENGINE == "sqlite" else 2_000
UPDATES = 40
BOOKINGS = 6
TESTER = "workers-test"


def booking(patient_id: str, practitioner_id: str) -> dict[str, Any]:
    return {"resourceType": "Appointment", "status": "booked",
            "start": "2031-05-04T09:00:00Z", "end": "2031-05-04T09:30:00Z",
            "participant": [{"actor": {"reference": f"Patient/{patient_id}"},
                             "status": "accepted"},
                            {"actor": {"reference": f"Practitioner/{practitioner_id}"},
                             "status": "accepted"}]}


class Counted:
    """An HTTP client that counts the requests it sends (each is one AuditEvent)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http, self.sent = http, 0

    async def __call__(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.sent += 1
        return await self.http.request(method, url, **kwargs)


@pytest.mark.slow
@pytest.mark.process
async def test_two_workers_share_the_database_under_load(store: Store) -> None:
    with server_process(store, FHIR_WORKERS="2") as server:
        assert len(children(server.proc.pid)) >= 2, "two worker processes"
        token = await mint_for_database(store, server.base, client_id=TESTER)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        async with httpx.AsyncClient(base_url=server.base + "/", headers=headers, timeout=120,
                                     limits=httpx.Limits(max_connections=CLIENTS)) as http:
            call = Counted(http)
            pid = (await call("POST", "Patient", json=patient(family="Shared"))).json()["id"]
            doctor = (await call("POST", "Practitioner", json={
                "resourceType": "Practitioner", "name": [{"family": "Busy"}]})).json()["id"]

            async def update(i: int) -> httpx.Response:
                while True:  # an update that loses a race answers 409: send it again
                    r = await call("PUT", f"Patient/{pid}", json=patient(id_=pid, family=f"U{i}"))
                    if r.status_code != 409:
                        return r

            updates = await asyncio.gather(*[update(i) for i in range(UPDATES)])
            assert all(r.status_code == 200 for r in updates), [r.text for r in updates]
            versions = sorted(int(r.json()["meta"]["versionId"]) for r in updates)
            assert versions == list(range(2, UPDATES + 2)), "every update its own version"
            booked = await asyncio.gather(*[call("POST", "Appointment", json=booking(pid, doctor))
                                            for _ in range(BOOKINGS)])
            assert sorted(r.status_code for r in booked) == [201] + [409] * (BOOKINGS - 1)

            todo = list(range(REQUESTS - call.sent))
            statuses: list[int] = []

            async def client() -> None:
                while todo:
                    n = todo.pop()
                    if n % 10 == 0:
                        r = await call("POST", "Patient", json=patient(family=f"Load{n}"))
                    elif n % 10 == 1:
                        r = await call("GET", "Patient", params={"family": "Load"})
                    else:
                        r = await call("GET", f"Patient/{pid}")
                    statuses.append(r.status_code)

            await asyncio.gather(*[client() for _ in range(CLIENTS)])
            assert set(statuses) <= {200, 201}, set(statuses)
            assert call.sent >= REQUESTS
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0
    with server_process(store) as again:
        auditor = await mint_for_database(store, again.base, "system/AuditEvent.rs",
                                          client_id="auditor")
        async with httpx.AsyncClient(base_url=again.base + "/", timeout=120, headers={
                "Authorization": f"Bearer {auditor}"}) as http:
            counted = (await http.get("AuditEvent", params={
                "agent:identifier": f"urn:fhir-server:client|{TESTER}",
                "_summary": "count"})).json()["total"]
    assert counted == call.sent


def _established(pid: int, port: int) -> int:
    """How many TCP connections to ``port`` the process ``pid`` holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


@pytest.mark.process
def test_connections_opened_together_are_spread_over_the_workers(tmp_path: Path) -> None:
    """A client that opens its keep-alive connections at once (a proxy, a pool) gets both
    workers, not the one that woke first (each worker listens on its own socket)."""
    with server_process(tmp_path, FHIR_WORKERS="2", FHIR_AUTH="off") as server:
        workers = [pid for pid in children(server.proc.pid)  # not the resource tracker
                   if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2, workers
        connections = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(32)]
        try:
            for conn in connections:  # each answered: accepted by a worker
                conn.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            for conn in connections:
                assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            held = [_established(pid, server.port) for pid in workers]
        finally:
            for conn in connections:
                conn.close()
    assert sum(held) == 32, held
    # Spread by the kernel by address: one worker with 3 or fewer of 32 is a 1 in 380,000 chance.
    assert min(held) >= 4, held


@pytest.mark.process
def test_a_port_in_use_is_refused_not_shared(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = launch(tmp_path, port=taken.getsockname()[1], FHIR_WORKERS="2",
                        FHIR_AUTH="off")
        try:
            assert server.proc.wait(timeout=60) == EXIT_STARTUP_FAILURE
        finally:
            if server.proc.poll() is None:
                server.kill()
    assert "cannot listen on 127.0.0.1" in server.log.read_text()
