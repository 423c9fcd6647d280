"""Leases that die with their holder, and writes fenced by them, on the real database.

A holder is a real process: one that is killed (SIGKILL) leaves its lease to lapse, one that
is paused (SIGSTOP) past its lease loses it to the next taker, and its late write is refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fhir_server.storage.fence import LeaseLost, unfenced
from fhir_server.storage.locks import LOCKS, LockBusy
from fhir_server.storage.model import now_ms
from fhir_server.storage.repository import PlannedWrite, Repository
from tests.support.store import ROOT, Store

LEASE = 1.5  # seconds: short, so that lapsing is quick to see
NAME = "schedule:Practitioner/lease-test"

# A holder process: takes NAME with a LEASE-second lease, says "held", then on each line
# of its standard input writes the next version of Patient/late (or, on "exit", leaves).
HOLDER = f"""
import asyncio, sys
from fhir_server.core.config import get_settings
from fhir_server.storage.fence import LeaseLost, unfenced
from fhir_server.storage.open import open_repository

async def main():
    repo = await open_repository(get_settings())
    loop = asyncio.get_running_loop()
    async with repo.locks.hold([{NAME!r}], lease={LEASE}):
        print("held", flush=True)
        while (line := await loop.run_in_executor(None, sys.stdin.readline)).strip() != "exit":
            current = await repo.current(type_="Patient", id_="late")
            try:
                await repo.write(type_="Patient", id_="late",
                                 previous=current.version if current else None,
                                 text='{{"resourceType":"Patient","id":"late"}}', index={{}},
                                 method="PUT")
                print("written", flush=True)
            except LeaseLost as lost:
                print("lost", lost.name, flush=True)
    await repo.close()

asyncio.run(main())
"""


@contextmanager
def holder(store: Store) -> Iterator[subprocess.Popen[str]]:
    env = {**{k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DATABASE")},
           **store.env(), "FHIR_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=30)


def ask(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


@pytest.mark.slow
async def test_a_live_holder_keeps_its_lease_past_the_lease_time(repo: Repository) -> None:
    async with repo.locks.hold([NAME], lease=LEASE):
        first = (await repo.records.get(kind=LOCKS, id_=NAME)) or {}
        await asyncio.sleep(LEASE * 3)  # three lease periods: renewed, never lapsed
        later = (await repo.records.get(kind=LOCKS, id_=NAME)) or {}
        assert later["owner"] == first["owner"]
        assert later["expires"] > first["expires"] + LEASE
        with pytest.raises(LockBusy):
            async with repo.locks.hold([NAME], wait=0.2):
                pass
        await repo.write(type_="Patient", id_="kept", previous=None, text="{}", index={},
                         method="POST")  # still its holder's: the fenced write commits
    assert await repo.records.get(kind=LOCKS, id_=NAME) is None  # released on leaving


@pytest.mark.process
async def test_a_killed_holders_lease_lapses_within_the_lease(store: Store,
                                                              repo: Repository) -> None:
    with holder(store) as proc:
        proc.kill()
        proc.wait(timeout=30)
        killed = time.monotonic()
        async with repo.locks.hold([NAME], wait=30.0, lease=LEASE):
            waited = time.monotonic() - killed
    assert waited <= LEASE + 1.0, waited  # the lease, plus the taker's back-off


@pytest.mark.slow
@pytest.mark.process
async def test_a_paused_holders_late_write_is_refused(store: Store, repo: Repository) -> None:
    with holder(store) as proc:
        assert ask(proc, "write") == "written"  # version 1, under its lease
        os.kill(proc.pid, signal.SIGSTOP)
        await asyncio.sleep(LEASE + 0.5)  # it stops renewing: the lease lapses
        async with repo.locks.hold([NAME], wait=10.0, lease=LEASE):
            taker = (await repo.records.get(kind=LOCKS, id_=NAME)) or {}
            await repo.write(type_="Patient", id_="late", previous=1, text="{}", index={},
                             method="PUT")  # the successor's write: version 2
            os.kill(proc.pid, signal.SIGCONT)
            assert ask(proc, "write") == f"lost {NAME}"  # the late write: refused
            assert ask(proc, "exit") == ""  # it leaves (releasing nothing of the taker's)
            proc.wait(timeout=30)
            assert (await repo.records.get(kind=LOCKS, id_=NAME) or {}).get("owner") == \
                taker["owner"]
        current = await repo.current(type_="Patient", id_="late")
        assert current is not None and current.version == 2 and current.text == "{}"
        history = await repo.version(type_="Patient", id_="late", version=3)
        assert history is None  # nothing of the refused write was left behind


async def test_a_lost_lease_refuses_a_transaction_whole(repo: Repository) -> None:
    async def take_over() -> None:  # what a successor does once the lease lapsed
        await repo.records.delete(kind=LOCKS, id_=NAME)
        assert await repo.records.insert(kind=LOCKS, doc={"_id": NAME, "owner": "successor",
                                                          "expires": time.time() + LEASE})

    writes = [PlannedWrite("Patient", f"tx{i}", None, "{}", {}, "POST") for i in range(3)]
    with pytest.raises(LeaseLost):
        async with repo.locks.hold([NAME], lease=LEASE):
            with unfenced():
                await take_over()
            await repo.commit_transaction(writes, ts=now_ms())
    for i in range(3):
        assert await repo.current(type_="Patient", id_=f"tx{i}") is None
    assert (await repo.records.get(kind=LOCKS, id_=NAME) or {}).get("owner") == "successor"
