"""The slow part of start-up, run in the background so that the process answers at once.

A served process (uvicorn) binds its port and answers ``/health`` within its first second;
the work that can take a minute (opening the database, waiting for a lease another
process holds, loading the terminology packs) runs afterwards as one background task of
named steps. ``/ready`` answers 503 naming the steps not yet done (``waiting``) until
every one is; a FHIR request that arrives meanwhile waits for it a little
(``REQUEST_WAIT``), then gets 503 with ``Retry-After`` (``request_started``).

Each step pushes what undoes it (close the database, stop a loop) on one exit stack, so
that a stop at any moment, even mid-step, undoes exactly what was done. A step that fails
ends the start-up: the failure is logged and ``on_failure`` asks the server to stop; the
process then exits non-zero (``fhir_server/runtime/serving.py``). An app run in-process (tests,
the CLI's ``load``) waits for the steps before it serves, and a failure raises there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request

from fhir_server.core.errors import FhirError

log = logging.getLogger("fhir_server.runtime.startup")

REQUEST_WAIT = 10.0  # seconds a FHIR request waits for the start-up before it gets 503
RETRY_AFTER = 10  # seconds, in that 503's Retry-After

T = TypeVar("T")


@dataclass(frozen=True)
class Step:
    """One piece of the start-up: its name (as ``/ready`` lists it) and its work, which
    pushes its own undoing on the stack it is given."""

    name: str
    run: Callable[[AsyncExitStack], Awaitable[None]]


class StartupFailed(RuntimeError):
    """A start-up step failed (its exception is the cause)."""


class Startup:
    """The background start-up of one app."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._pending: list[str] = []
        self.stack = AsyncExitStack()
        self.failed: BaseException | None = None

    def begin(self, steps: Sequence[Step], on_failure: Callable[[], None]) -> None:
        self._pending = [step.name for step in steps]
        self._task = asyncio.get_running_loop().create_task(
            self._run(steps, on_failure), name="start-up")

    async def _run(self, steps: Sequence[Step], on_failure: Callable[[], None]) -> None:
        for step in steps:
            try:
                await step.run(self.stack)
            except Exception as error:
                self.failed = error
                log.error("start-up failed step=%s error=%s", step.name, type(error).__name__,
                          exc_info=error)
                on_failure()
                raise StartupFailed(step.name) from error
            self._pending.remove(step.name)
            log.info("start-up step done step=%s", step.name)

    @property
    def done(self) -> bool:
        """Every step finished without an error."""
        return self._task is not None and self._task.done() and not self._pending

    def waiting(self) -> list[str]:
        """The steps not yet done, in order."""
        return list(self._pending)

    async def wait(self) -> None:
        """Until every step is done; raises the error of a step that failed."""
        if self._task is None:
            raise RuntimeError("the app's lifespan has not begun its start-up")
        try:
            await asyncio.shield(self._task)
        except StartupFailed:
            assert self.failed is not None
            raise self.failed from None

    async def stop(self, timeout: float) -> None:
        """Cancel the steps still running (a lease wait, a load), give them ``timeout``
        seconds to unwind, then undo what the steps did, last first."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=timeout)
            if not done:
                log.warning("start-up did not stop within seconds=%g", timeout)
        await self.stack.aclose()


async def request_started(request: Request) -> None:
    """Dependency of the routes that need the database: waits up to ``REQUEST_WAIT`` for
    the start-up, else answers 503 with ``Retry-After``."""
    startup: Startup = request.app.state.startup
    if startup.done:
        return
    try:
        await asyncio.wait_for(startup.wait(), timeout=REQUEST_WAIT)
    except Exception:  # not started in time, or never will be
        raise FhirError(status=503, code="transient",
                        diagnostics="The server is starting; try again later",
                        headers={"Retry-After": str(RETRY_AFTER)}) from None


async def on_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``make()`` on a new event loop in a thread of its own, so that none of its
    blocking pieces (parsing a code system: seconds) holds up the loop that answers
    ``/health``. Cancelling the caller cancels the coroutine there too and waits for it to
    unwind. The thread is a daemon: one stuck in a blocking call never keeps a stopping
    process alive (a transaction it had begun is rolled back by the database)."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    lock = threading.Lock()
    state: dict[str, Any] = {"cancelled": False}

    def run() -> None:
        loop = asyncio.new_event_loop()
        try:
            with lock:
                if state["cancelled"]:
                    raise asyncio.CancelledError
                task = loop.create_task(make())
                state["loop"], state["task"] = loop, task
            done.set_result(loop.run_until_complete(task))
        except BaseException as error:
            done.set_exception(error)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    threading.Thread(target=run, name="start-up", daemon=True).start()
    try:
        return await asyncio.shield(finished := asyncio.wrap_future(done))
    except asyncio.CancelledError:
        with lock:
            state["cancelled"] = True
            if "task" in state:
                state["loop"].call_soon_threadsafe(state["task"].cancel)
        with contextlib.suppress(BaseException):
            await finished
        raise
