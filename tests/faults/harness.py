"""Fault injection: a server process killed (SIGKILL to its process group) at moments drawn
from a seed, restarted on the same data, and checked.

* ``FHIR_FAULT_SEED``: the seed (default: a fresh one, printed at the start and in every
  failure, so that ``FHIR_FAULT_SEED=<seed> FHIR_TEST_ENGINE=<engine> pytest tests/faults
  -k <scenario>`` replays a failure: each scenario draws from its own generator, seeded with
  the seed and its name, so running one scenario alone draws the same moments).
* ``FHIR_FAULT_KILLS``: kills per engine in all (default ``DEFAULT_TOTAL``), shared out in
  proportion to the scenarios' default counts.
* ``FHIR_FAULT_LEASE_SECONDS``: the servers' lease (``FHIR_LEASE_SECONDS``), and so how
  soon after a restart is ready the next booking on the schedule of a killed booking must
  succeed (default 3: the shortest lease the server allows, so that the waits for a dead
  holder's lease to lapse do not dominate the suite; the mechanism is the same whatever
  the lease, and tests/storage/test_leases.py checks it with real processes too).
* ``FHIR_FAULT_LOAD_SECONDS``: what a first start may add to the 30 s for loading the
  terminology (default: 150 on SQLite, 420 on MongoDB/FerretDB).

Expected values come from what the clients sent and what the server acknowledged (a 2xx, an
MLLP AA), never from what the server holds after the kill.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fhir_server.storage.open import open_repository
from tests.support.server_process import (
    ServerProcess,
    free_port,
    launch,
    server_env,
    stop_process,
    wait_ready,
)
from tests.support.store import ENGINE, HTTP_TIMEOUT, Store, make_settings, mint_for_database

RESTART_READY = 30.0  # seconds from a restart to /ready 200
LEASE_SECONDS = float(os.environ.get("FHIR_FAULT_LEASE_SECONDS", "3"))
LOAD_SECONDS = float(os.environ.get("FHIR_FAULT_LOAD_SECONDS")
                     or (150 if ENGINE == "sqlite" else 420))
# Kills per scenario by default: at least 50 per engine in all, within about 5 minutes per
# engine on a 2-core machine. Every kill costs a start (3 to 6 s); one in a scenario that
# holds leases (bookings, 835s, HL7 v2 messages, EHR syncs) also costs the wait for the dead
# holder's lease to lapse (up to LEASE_SECONDS after the kill) before the next work on it succeeds,
# and the first start one whole terminology load (a minute on SQLite, two to three on
# FerretDB) however many kills precede it. Kills of a running or starting server on
# existing data cost a start and little else, hence the most of them.
DEFAULT_KILLS = {"first-start": 5, "restart": 13, "transactions": 8, "bookings": 5,
                 "bill-submit": 5, "import-835": 5, "hl7v2-burst": 5, "ehr-sync": 4}
DEFAULT_TOTAL = sum(DEFAULT_KILLS.values())


def _seed() -> int:
    given = os.environ.get("FHIR_FAULT_SEED")
    return int(given) if given else random.SystemRandom().randrange(1, 2**31)


SEED = _seed()


def kills_for(scenario: str) -> int:
    total = int(os.environ.get("FHIR_FAULT_KILLS") or DEFAULT_TOTAL)
    return max(1, round(DEFAULT_KILLS[scenario] * total / DEFAULT_TOTAL))


@dataclass
class Tally:
    """What one scenario did on this engine, for the summary."""

    kills: int = 0
    restarts: list[float] = field(default_factory=list)  # seconds from start to /ready
    checks: dict[str, int] = field(default_factory=dict)  # check -> times it held
    failure: str | None = None
    # Where the time went (seconds): starts to /ready, work until the kill and the clients
    # noticing it, and everything else (set-up, checks, waits for a lease).
    spent: dict[str, float] = field(default_factory=lambda: {"starts": 0.0, "work": 0.0,
                                                              "total": 0.0})


TALLIES: dict[str, Tally] = {}


def replay(scenario: str) -> str:
    return (f"replay: FHIR_FAULT_SEED={SEED} FHIR_TEST_ENGINE={ENGINE} "
            f".venv/bin/python -m pytest tests/faults -k {scenario.replace('-', '_')}")


class FaultFailure(AssertionError):
    pass


class LeaseHeld(FaultFailure):
    """A lease left by the killed process still blocks work after the restart, past the
    time within which a dead holder's lease must lapse (its holder no longer renews it:
    see fhir_server/storage/locks.py). The failure names the lease and how long it is
    still held, so that a regression of issue 23 says what it is."""


class Killable:
    """``python -m fhir_server serve`` in its own process group, on one port and one store,
    killed and started again as often as the scenario wants."""

    def __init__(self, store: Store, scenario: str, **env: str) -> None:
        self.store, self.scenario = store, scenario
        self.port = free_port()
        self.env = server_env(store, self.port, FHIR_LEASE_SECONDS=str(LEASE_SECONDS), **env)
        self.root = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.root}/fhir"
        self.proc: subprocess.Popen[bytes] | None = None
        self.server: ServerProcess | None = None
        self.log = store.data_dir / f"server-{scenario}.log"
        self.launched = 0.0

    @property
    def process(self) -> ServerProcess:
        assert self.server is not None
        return self.server

    def launch(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"--- launch at {time.time():.3f}\n".encode())
        self.server = launch(self.store, port=self.port, env=self.env, log=self.log, group=True)
        self.proc = self.server.proc
        self.launched = time.monotonic()

    def kill(self) -> None:
        """SIGKILL to the server's whole process group (workers included)."""
        assert self.server is not None
        self.server.kill()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            stop_process(self.proc)
        except AssertionError:
            self.kill()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


async def leases(store: Store) -> dict[str, dict[str, Any]]:
    """The lease records on the store (name -> record), read as another process would."""
    try:
        repo = await open_repository(make_settings(store))
    except Exception:  # a diagnostic only
        return {}
    try:
        return {str(d["_id"]): d for d in await repo.records.all(kind="locks")}
    except Exception:
        return {}
    finally:
        await repo.close()


class Scenario:
    """One scenario on one engine: a server process reused across its kills."""

    def __init__(self, name: str, store: Store, **env: str) -> None:
        self.name, self.store = name, store
        self.rng = random.Random(f"{SEED}/{name}")
        self.kills = kills_for(name)
        self.server = Killable(store, name, **env)
        self.tally = TALLIES.setdefault(name, Tally())
        self.round = 0
        self.token = ""
        self.began = time.monotonic()

    def where(self) -> str:
        return (f"[{self.name} engine={ENGINE} seed={SEED} kill {self.round}/{self.kills}] ")

    def fail(self, what: str, error: type[FaultFailure] = FaultFailure) -> None:
        message = self.where() + what
        self.tally.failure = message
        raise error(f"{message}\n{replay(self.name)}\n--- server log tail ---\n"
                           f"{self.server.tail()}")

    def check(self, name: str, ok: bool, what: str = "",
              error: type[FaultFailure] = FaultFailure) -> None:
        if not ok:
            self.fail(f"{name}: {what}", error)
        self.tally.checks[name] = self.tally.checks.get(name, 0) + 1

    # -- starting ------------------------------------------------------------------------
    async def start(self, *, bound: float = RESTART_READY, left: dict[str, Any] | None = None
                    ) -> float:
        """Launch and wait for /ready; fail past ``bound`` seconds. ``left``: the leases
        the killed process left (a restart that waits for one of them past the bound is
        named as such, and fails at the bound)."""
        self.server.launch()
        proc = self.server.proc
        assert proc is not None
        while True:
            try:
                await asyncio.to_thread(wait_ready, self.server.root, proc, 2.0)
                took = time.monotonic() - self.server.launched
                break
            except RuntimeError:
                waited = time.monotonic() - self.server.launched
                if proc.poll() is not None:
                    self.fail(f"the server exited with {proc.returncode} during start-up "
                              f"after {waited:.1f} s")
                if waited > bound:
                    self.server.kill()
                    stuck = await self._stuck(left)
                    self.fail(f"no /ready within {bound:g} s of the restart" + stuck,
                              LeaseHeld if stuck else FaultFailure)
                if waited > RESTART_READY and left:
                    stuck = await self._stuck(left, past=self.server.launched + bound)
                    if stuck:
                        self.server.kill()
                        self.fail(f"no /ready {waited:.0f} s after the restart" + stuck,
                                  LeaseHeld)
        self.check("ready within bound", took <= bound, f"{took:.1f} s")
        self.tally.restarts.append(took)
        self.tally.spent["starts"] += took
        if not self.token:
            self.token = await mint_for_database(self.store, self.server.base)
        return took

    def ref(self, location: str) -> str:
        """``Type/id`` of a Location header or a response's location (absolute or not)."""
        return "/".join(location.removeprefix(self.server.base + "/").split("/")[:2])

    async def _stuck(self, left: dict[str, Any] | None, past: float | None = None) -> str:
        """Leases the killed process left that are still held by it (and, with ``past``,
        will be held beyond that monotonic moment)."""
        if not left:
            return ""
        now = await leases(self.store)
        wall = time.time()
        found = []
        for name, held in now.items():
            before = left.get(name)
            if before is None or before.get("owner") != held.get("owner"):
                continue
            expires = float(held.get("expires", 0))
            if past is not None and expires - wall < past - time.monotonic():
                continue
            found.append(f"lease {name!r} left by the killed process, held for "
                         f"{expires - wall:.0f} s more")
        return ("; " + "; ".join(found)) if found else ""

    def http(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.base + "/", timeout=HTTP_TIMEOUT,
                                 headers={"Authorization": f"Bearer {self.token}",
                                          "Accept": "application/fhir+json"},
                                 limits=httpx.Limits(max_connections=16), **kwargs)

    # -- killing -------------------------------------------------------------------------
    async def kill_during(self, work: Callable[[], Awaitable[Any]], low: float, high: float
                         ) -> dict[str, Any]:
        """Run ``work`` (clients that go on until the server dies), SIGKILL the server at a
        moment drawn in [low, high] seconds, let the clients see it, and return the leases
        the killed process left."""
        self.round += 1
        moment = self.rng.uniform(low, high)
        began = time.monotonic()
        task = asyncio.create_task(work())
        await asyncio.sleep(moment)
        if task.done():  # the work ended before the kill: it raised, or was too short
            task.result()
        self.server.kill()
        self.tally.kills += 1
        try:
            await asyncio.wait_for(task, timeout=HTTP_TIMEOUT)
        except TimeoutError:
            self.fail("the clients did not notice the kill within 60 s")
        self.tally.spent["work"] += time.monotonic() - began
        return await leases(self.store)

    async def kill_starting(self, low: float, high: float) -> dict[str, Any]:
        """Launch the server and SIGKILL it at a moment drawn in [low, high] seconds after,
        whatever it is doing then; return the leases it left."""
        self.round += 1
        moment = self.rng.uniform(low, high)
        self.server.launch()
        await asyncio.sleep(moment)
        self.server.kill()
        self.tally.kills += 1
        self.tally.spent["starts"] += moment
        return await leases(self.store)

    async def restart(self, left: dict[str, Any]) -> float:
        return await self.start(left=left)

    def close(self) -> None:
        self.server.stop()
        if self.began:
            self.tally.spent["total"] += time.monotonic() - self.began
            self.began = 0.0


TRANSPORT = (httpx.TransportError,)


async def until_dead(send: Callable[[int], Awaitable[None]]) -> None:
    """Call ``send(0)``, ``send(1)``... until the server stops answering."""
    n = 0
    try:
        while True:
            await send(n)
            n += 1
    except TRANSPORT:
        return


async def all_of(http: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    """Every resource a search finds, page by page."""
    out: list[dict[str, Any]] = []
    url: str | None = query + ("&" if "?" in query else "?") + "_count=500"
    while url:
        r = await http.get(url)
        assert r.status_code == 200, r.text
        page = r.json()
        out += [e["resource"] for e in page.get("entry", []) if "resource" in e]
        url = next((link["url"] for link in page.get("link", [])
                    if link["relation"] == "next"), None)
    return out


def summary_lines() -> list[str]:
    lines = [f"fault injection (engine {ENGINE}, seed {SEED}; replay with FHIR_FAULT_SEED):"]
    total = 0
    slowest: tuple[float, str] = (0.0, "")
    for name, t in TALLIES.items():
        total += t.kills
        worst = max(t.restarts, default=0.0)
        if worst > slowest[0]:
            slowest = (worst, name)
        checks = ", ".join(f"{c} x{n}" for c, n in t.checks.items())
        lines.append(f"  {name:<13} {t.kills:>3} kills, {len(t.restarts)} starts, slowest "
                     f"{worst:.1f} s to /ready; checked: {checks}")
        spent = t.spent
        rest = spent["total"] - spent["starts"] - spent["work"]
        lines.append(f"  {'':<13} {spent['total']:.0f} s: starts {spent['starts']:.0f} s, work "
                     f"until the kills {spent['work']:.0f} s, set-up, checks and waits "
                     f"{rest:.0f} s")
        if t.failure:
            lines.append(f"    FAILED: {t.failure}")
    lines.append(f"  total {total} kills on {ENGINE}; slowest start to /ready "
                 f"{slowest[0]:.1f} s ({slowest[1] or '-'})")
    return lines


def write_summary(path: Path | None = None) -> None:
    if path is not None:
        path.write_text("\n".join(summary_lines()) + "\n")
