"""Graceful shutdown on SIGTERM: readiness fails first, in-flight requests finish, then the
lifespan flushes the audit queue and closes the database.

uvicorn stops at once on SIGTERM: it closes the listening socket, waits for the requests
in flight (up to ``FHIR_SHUTDOWN_GRACE_SECONDS``, its ``timeout_graceful_shutdown``) and
runs the lifespan's end. Before that, a load balancer must stop sending requests: for
``FHIR_SHUTDOWN_DRAIN_SECONDS`` after SIGTERM the server keeps serving while ``/ready``
answers 503, then hands the signal to uvicorn. ``install_drain`` puts itself in front of
uvicorn's own handler from the lifespan's start (uvicorn installs its handlers just
before), in the single process and in every worker alike. A second SIGTERM, or SIGINT,
stops without waiting for the drain, and so does a SIGTERM while the server is still
starting (it is not in any load balancer's rotation yet).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("fhir_server.shutdown")


def install_drain(state: Any, drain_seconds: float,
                  starting: Callable[[], bool] = lambda: False) -> uvicorn.Server | None:
    """On SIGTERM set ``state.draining`` (``/ready`` answers 503), and pass the signal on
    to the uvicorn server running this app ``drain_seconds`` later (at once while
    ``starting()``). The server, or None when this process is not a uvicorn server's
    (in-process use, tests)."""
    state.draining = False
    if threading.current_thread() is not threading.main_thread():
        return None
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if not isinstance(server, uvicorn.Server):
        return None

    def on_term(signum: int, frame: FrameType | None) -> None:
        if state.draining or drain_seconds <= 0 or starting():
            state.draining = True
            server.handle_exit(signum, frame)
            return
        state.draining = True
        log.info("draining seconds=%g: /ready answers 503, requests are still served",
                 drain_seconds)
        timer = threading.Timer(drain_seconds, server.handle_exit, (signum, None))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_term)
    return server


def stop_server(server: uvicorn.Server | None) -> None:
    """Ask the uvicorn server to stop, as a signal would (without one to raise again)."""
    if server is not None:
        server.should_exit = True
