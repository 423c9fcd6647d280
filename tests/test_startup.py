"""The start-up of real server processes (``python -m fhir_server serve``), on both engines.

* ``/health`` answers while the start-up waits (here: on the terminology lease, held by
  this test), ``/ready`` says what it waits for, a FHIR request gets 503 with
  ``Retry-After``, and SIGTERM stops the starting server within the shutdown grace, one
  process or two workers and their parent;
* SIGTERM stops a server in the middle of its first terminology load, as quickly;
* fresh starts of two workers on new databases all reach ``/ready`` (no start-up race);
* a start whose database cannot be opened exits non-zero, with one worker or two.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from fhir_server.storage.open import SQLITE_FILE, open_repository
from fhir_server.terminology.loader import LOAD_LEASE
from tests.support.server_process import free_port, launch, stop_process, wait_ready
from tests.support.store import ENGINE, Store, StoreFactory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="real processes")

GRACE = 5  # FHIR_SHUTDOWN_GRACE_SECONDS of the servers started here
STOPPED_WITHIN = GRACE + 10  # SIGTERM to exit, with margin for a busy 2-core machine
HEALTH_WITHIN = 30.0  # process start to the first /health 200, on that busy machine
FRESH_STARTS = 3


class Server:
    """A server process that has not necessarily finished its start-up; its log kept."""

    def __init__(self, store: Store, **env: str) -> None:
        self.began = time.monotonic()
        self.server = launch(store, FHIR_SHUTDOWN_GRACE_SECONDS=str(GRACE), **env)
        self.proc = self.server.proc
        self.origin = self.server.root

    @property
    def log(self) -> list[str]:
        """The lines the server has written so far."""
        assert self.server.log is not None
        return self.server.log.read_text(errors="replace").splitlines(keepends=True)

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.log)

    async def until(self, what: str, check: Any, timeout: float) -> Any:
        """Poll ``check()`` (async) until it returns something true."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode} "
                                     f"waiting for {what}:\n{''.join(self.log[-30:])}")
            try:
                found = await check()
            except httpx.TransportError:
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:g} s")
            await asyncio.sleep(0.1)

    async def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """Send ``sig``; the exit code and the seconds it took."""
        sent = time.monotonic()
        code = await asyncio.to_thread(stop_process, self.proc, sig, 60)
        return code, time.monotonic() - sent


@contextmanager
def started(store: Store, **env: str) -> Iterator[Server]:
    server = Server(store, **env)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize("workers", ["1", "2"])
async def test_health_answers_and_sigterm_stops_while_the_start_up_waits(
        store: Store, workers: str) -> None:
    repo = await open_repository(store.settings())
    try:
        # Another holder of the terminology lease, alive (its lease renewed) while we test.
        async with repo.locks.hold([LOAD_LEASE], wait=10):
            with started(store, FHIR_WORKERS=workers, FHIR_TERMINOLOGY_LOAD="true",
                         FHIR_SHUTDOWN_DRAIN_SECONDS="30") as server:
                async with httpx.AsyncClient(base_url=server.origin, timeout=30) as http:

                    async def health() -> bool:
                        return (await http.get("/health")).status_code == 200

                    await server.until("/health 200", health, HEALTH_WITHIN)

                    async def waits_for_terminology() -> dict[str, Any] | None:
                        ready = await http.get("/ready")
                        assert ready.status_code == 503, ready.text
                        body: dict[str, Any] = ready.json()
                        return body if body["waiting"] == ["terminology", "listeners"] else None

                    # The database and the services are up, the models warmed: only the
                    # lease keeps it waiting.
                    body = await server.until("a start-up waiting on the lease only",
                                              waits_for_terminology, 120)
                    assert body["status"] == "starting"
                    asked = time.monotonic()
                    early = await http.get("/fhir/metadata")
                    assert early.status_code == 503
                    assert int(early.headers["Retry-After"]) > 0
                    assert early.json()["issue"][0]["code"] == "transient"
                    assert time.monotonic() - asked < 20, "waited a little, then answered"
                    assert (await http.get("/health")).status_code == 200
                    # Still starting: no drain (it is in no load balancer's rotation yet).
                    code, took = await server.stop()
                    assert code == 0, "".join(server.log[-30:])
                    assert took < STOPPED_WITHIN, f"stopped after {took:.1f} s"
    finally:
        await repo.close()


@pytest.mark.slow
@pytest.mark.process
async def test_sigterm_stops_a_first_start_in_the_middle_of_its_terminology_load(
        store: Store) -> None:
    with started(store, FHIR_TERMINOLOGY_LOAD="true", FHIR_LOG_LEVEL="INFO") as server:

        async def loading() -> bool:
            return server.logged("terminology loading pack=")

        await server.until("the terminology load", loading, 120)
        await asyncio.sleep(2)
        assert not server.logged("serving base_url="), "the load took under 2 s?"
        code, took = await server.stop()
        assert code == 0, "".join(server.log[-30:])
        assert took < STOPPED_WITHIN, f"stopped after {took:.1f} s"


@pytest.mark.slow
@pytest.mark.process
async def test_fresh_starts_of_two_workers_all_reach_ready(new_store: StoreFactory) -> None:
    for _ in range(FRESH_STARTS):
        store = new_store()
        try:
            with started(store, FHIR_WORKERS="2") as server:
                await asyncio.to_thread(wait_ready, server.origin, server.proc)
                code, _ = await server.stop()
                assert code == 0, "".join(server.log[-30:])
            assert not any("Traceback" in line for line in server.log), "".join(server.log)
        finally:
            await store.drop()


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_start_whose_database_cannot_be_opened_exits_non_zero(
        store: Store, workers: str) -> None:
    if ENGINE == "sqlite":
        (store.data_dir / SQLITE_FILE).mkdir()  # where the database file should be
        env = {}
    else:
        env = {"MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/"}
    with started(store, FHIR_WORKERS=workers, **env) as server:
        code = await asyncio.to_thread(server.proc.wait, 90)
        assert code == 3, "".join(server.log[-30:])
        assert server.logged("start-up failed step=database")
        if workers == "2":  # stopped at the first failure, not replaced again and again
            assert server.logged("worker failed to start")
            assert sum("start-up failed" in line for line in server.log) <= 2


# Process launch to the first /health 200, the fastest of three starts: one process serves
# before it imports the app (``booting.py``); with workers, each is a new interpreter the
# parent spawns once it is running itself.
FIRST_HEALTH = {"1": 1.0, "2": 2.0}


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize("workers", ["1", "2"])
async def test_health_answers_in_the_first_second(store: Store, workers: str) -> None:
    """The port answers /health before the app is even imported (on a busy 2-core machine
    one start can wait for a CPU: the fastest of three is judged)."""
    took = []
    for _ in range(3):
        with started(store, FHIR_WORKERS=workers) as server:
            async with httpx.AsyncClient(base_url=server.origin, timeout=5) as http:
                while True:
                    try:
                        if (await http.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert server.proc.poll() is None, "".join(server.log[-30:])
                    await asyncio.sleep(0.02)
                took.append(time.monotonic() - server.began)
            code, _ = await server.stop()
            assert code == 0
    assert min(took) <= FIRST_HEALTH[workers], took
