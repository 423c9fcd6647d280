"""The parent of ``FHIR_WORKERS`` server processes (in place of uvicorn's ``Multiprocess``).

* A worker whose start-up fails (exit code ``EXIT_STARTUP_FAILURE``) stops them all and
  the parent exits with that code: the next worker would fail the same way, and whoever
  started the server must see it (uvicorn's supervisor returned normally whatever
  happened).
* A worker that dies otherwise (killed, out of memory) is replaced.
* SIGTERM or SIGINT is passed to every worker; each drains, finishes its requests and
  flushes its audit queue. A worker still running ``stop_timeout`` seconds later is killed,
  so the parent never waits for ever on a worker stuck in its start-up.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from types import FrameType

import uvicorn
from uvicorn._subprocess import get_subprocess

from fhir_server.runtime.exit_codes import EXIT_STARTUP_FAILURE, STOP_SIGNALS

log = logging.getLogger("fhir_server.runtime.supervisor")

POLL = 0.2  # seconds between looks at the workers


class Supervisor:
    def __init__(self, *, config: uvicorn.Config, target: Callable[..., None],
                 sockets: list[socket.socket], stop_timeout: float) -> None:
        """One worker per socket (``listening.py``); a replacement gets the socket of the
        worker it replaces."""
        self.config, self.target, self.sockets = config, target, sockets
        self.stop_timeout = stop_timeout
        self.processes: list[SpawnProcess] = []
        self.stopping = threading.Event()
        self.signal: int | None = None
        self.exit_code = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
        self.stopping.set()

    def _spawn(self, index: int) -> SpawnProcess:
        process = get_subprocess(self.config, self.target, [self.sockets[index]])
        process.start()
        log.info("worker started pid=%s", process.pid)
        return process

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            self.processes = [self._spawn(index) for index in range(len(self.sockets))]
            while not self.stopping.wait(POLL):
                self._look()
            if self.signal is not None:
                log.info("stopping signal=%s workers=%d", signal.Signals(self.signal).name,
                         len(self.processes))
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code

    def _look(self) -> None:
        """Replace a worker that died; stop everything when one failed its start-up."""
        for index, process in enumerate(self.processes):
            if process.is_alive():
                continue
            process.join()
            if process.exitcode == EXIT_STARTUP_FAILURE:
                log.error("worker failed to start pid=%s: stopping the server", process.pid)
                self.exit_code = EXIT_STARTUP_FAILURE
                self.stopping.set()
                return
            log.warning("worker died pid=%s exit_code=%s: replacing it", process.pid,
                        process.exitcode)
            self.processes[index] = self._spawn(index)

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker did not stop within seconds=%g pid=%s: killing it",
                          self.stop_timeout, process.pid)
                process.kill()
                process.join()
            elif process.exitcode == EXIT_STARTUP_FAILURE:
                self.exit_code = EXIT_STARTUP_FAILURE
