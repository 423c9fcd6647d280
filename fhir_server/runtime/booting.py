"""The ASGI app a server process serves from its first moment, while the real one is built.

Importing the app (FastAPI, the R4B models, the search registry: over a second, several on
a busy machine) used to come before the port was served, so ``/health`` did not answer for
that long. ``BootingApp`` is what uvicorn serves instead: it builds the real app in a
thread (``build``), and until then answers ``/health`` 200 and ``/ready`` 503 (waiting for
``app``), and holds any other request up to ``REQUEST_WAIT`` seconds for the app (then a
503 with ``Retry-After``). Once built, the real app's lifespan is started (its own start-up
runs in the background: ``startup.py``) and every request goes to it. A failure to build
or start stops the server; ``failed`` says why, and the process exits non-zero
(``serving.py``). This module imports nothing heavy on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("fhir_server.runtime.startup")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_WAIT = 10.0  # seconds a request waits for the app before it gets 503
RETRY_AFTER = "10"
UNAVAILABLE = {"resourceType": "OperationOutcome", "issue": [{
    "severity": "error", "code": "transient",
    "diagnostics": "The server is starting; retry after the time in Retry-After"}]}


class BootingApp:
    def __init__(self, build: Callable[[], ASGIApp], *, on_failure: Callable[[], None]) -> None:
        self.build = build
        self.on_failure = on_failure  # asks the server to stop
        self.app: Any = None  # the real app (FastAPI), once built
        self.failed: BaseException | None = None
        self._ready = asyncio.Event()
        self._boot: asyncio.Task[None] | None = None
        self._lifespan: asyncio.Future[None] | None = None
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(scope, receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await self._while_booting(scope, receive, send)

    async def _while_booting(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if path == "/health":
            await _answer(send, 200, {"status": "ok"})
            return
        if path == "/ready":
            state = "failed" if self.failed else "starting"
            await _answer(send, 503, {"status": state, "waiting": ["app"]})
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), REQUEST_WAIT)
        if self.app is None:
            await _answer(send, 503, UNAVAILABLE, content_type="application/fhir+json",
                          headers=[(b"retry-after", RETRY_AFTER.encode())])
            return
        await self.app(scope, receive, send)

    async def _serve_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """uvicorn's lifespan: starting completes at once (the app is built meanwhile);
        stopping stops the app's lifespan, or the building."""
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        self._boot = asyncio.create_task(self._start(dict(scope)))
        await send({"type": "lifespan.startup.complete"})
        message = await receive()  # lifespan.shutdown
        await self._stop()
        await send({"type": "lifespan.shutdown.complete"})

    async def _start(self, scope: Scope) -> None:
        try:
            app = await asyncio.to_thread(self.build)
            self._lifespan = asyncio.ensure_future(app(scope, self._to_app.get, self._from_app.put))
            await self._to_app.put({"type": "lifespan.startup"})
            reply = await self._from_app.get()
            if reply["type"] != "lifespan.startup.complete":
                raise RuntimeError(reply.get("message") or "the app's start-up failed")
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            log.error("start-up failed error=%s", type(error).__name__, exc_info=True)
            self.failed = error
            self.on_failure()
            return
        self.app = app
        self._ready.set()

    async def _stop(self) -> None:
        if self._boot is not None and not self._boot.done():
            self._boot.cancel()  # the build thread runs on to its end; its app is dropped
            await asyncio.gather(self._boot, return_exceptions=True)
        if self._lifespan is not None and not self._lifespan.done():
            await self._to_app.put({"type": "lifespan.shutdown"})  # it ends after answering
            await asyncio.gather(self._lifespan, return_exceptions=True)


async def _answer(send: Send, status: int, body: dict[str, Any], *,
                  content_type: str = "application/json",
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})
