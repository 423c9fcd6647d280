"""A peer (payer, collector) served on a loopback port from a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from tests.support.server_process import free_port


@contextmanager
def serve_in_thread(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """``app`` on a loopback port in a thread (``port``, or a free one); yields its base URL
    (``http://127.0.0.1:port``). A given port lets a test name the peer's address before
    the peer is up (a payer down, then back).

    When the test is over the peer stops without waiting for answers still in flight: a
    peer told to answer late (a slow payer) would otherwise hold every teardown for the
    rest of its delay, with nothing left to check.
    """
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the loopback peer on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = server.force_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), f"the loopback peer on port {port} did not stop"
