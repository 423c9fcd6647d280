"""CORS for browser SMART apps, as plain ASGI middleware on ``/fhir`` and ``/auth``.

Which origins are allowed, and for which clients, is ``auth/origins.py``'s. Here:

* a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin
  answers 204 with the origin echoed (never ``*``), the methods and request headers a
  FHIR client uses, and ``Access-Control-Max-Age`` (``FHIR_CORS_MAX_AGE``); from any
  other origin 403 without CORS headers;
* an actual request from an allowed origin gets ``Access-Control-Allow-Origin`` and
  ``Access-Control-Expose-Headers`` (``Location``, ``ETag``, ``Content-Location``, ...);
  from any other origin none, so the browser keeps the answer from the page;
* ``Access-Control-Allow-Credentials`` is never sent: SMART apps send their token in
  ``Authorization``, and no cookie of this server is to be usable from another site;
* every answer on these paths says ``Vary: Origin`` (it depends on it).

A request whose ``Origin`` is not the server's own goes on with ``request.state.
cross_origin`` set, so that the FHIR routes and the token endpoints refuse it when its
client (the token's, or the one that authenticates) is not one of that origin's
(``origin_refusal``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.api.negotiation import fhir_response_for_error
from fhir_server.auth.origins import AllowedOrigins, OriginTable
from fhir_server.core.errors import Issue, operation_outcome
from fhir_server.core.web_origin import origin_of

PATHS = ("/fhir", "/auth")
ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = ("Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, "
                 "If-None-Exist, If-Modified-Since, X-Request-Id, traceparent")
EXPOSE_HEADERS = ("Location, Content-Location, ETag, Last-Modified, WWW-Authenticate, "
                  "Retry-After, X-Request-Id, X-Progress")
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def _on_cors_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PATHS)


def cross_origin(scope: Scope, headers: Headers, base_url: str) -> str | None:
    """The request's ``Origin`` when it is another origin than the server's (the public
    base URL's, or the one the request was sent to); None without one. An ``Origin`` that
    is no origin (``null``: a sandboxed frame, a file) comes back as sent: never allowed."""
    sent = headers.get("origin")
    if sent is None:
        return None
    origin = origin_of(sent) or sent.strip()[:200]
    own = {origin_of(base_url), origin_of(f"{scope.get('scheme', 'http')}://{headers.get('host', '')}")}
    return None if origin in own else origin


class Cors:
    """``startup_wait`` and ``retry_after`` (seconds): how long a request waits for the
    start-up to read the origins, and the ``Retry-After`` of the 503 after that, as every
    request that needs the start-up (``runtime/startup.py``, handed in by ``main.py``)."""

    def __init__(self, app: ASGIApp, *, base_url: str, max_age: int, startup_wait: float,
                 retry_after: int) -> None:
        self.app = app
        self.base_url = base_url
        self.max_age = max_age
        self.startup_wait, self.retry_after = startup_wait, retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _on_cors_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = cross_origin(scope, headers, self.base_url)
        if origin is None:
            await self.app(scope, receive, _with_headers(send, {}))
            return
        scope.setdefault("state", {})["cross_origin"] = origin
        table = await _table(scope["app"].state, wait=self.startup_wait)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, table)(scope, receive, send)
            return
        allowed = table is not None and table.allows(origin)
        added = {"Access-Control-Allow-Origin": origin,
                 "Access-Control-Expose-Headers": EXPOSE_HEADERS} if allowed else {}
        await self.app(scope, receive, _with_headers(send, added))

    def _preflight(self, origin: str, table: OriginTable | None) -> Response:
        if table is None:
            return _outcome(503, "transient", "The server cannot read its clients' origins "
                            "yet; retry later", {"Retry-After": str(self.retry_after)})
        if not table.allows(origin):
            return _outcome(403, "forbidden", f"The web origin {origin} may not call this "
                            "server from a browser (register it with `fhir-server clients add "
                            "--origin`, or in FHIR_CORS_ORIGINS)", {})
        return Response(status_code=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": str(self.max_age),
            "Vary": PREFLIGHT_VARY})


def _outcome(status: int, code: str, diagnostics: str, headers: dict[str, str]) -> Response:
    return fhir_response_for_error(status, operation_outcome([Issue(code, diagnostics)]),
                                   {**headers, "Vary": PREFLIGHT_VARY})


async def _table(state: Any, *, wait: float) -> OriginTable | None:
    """The origin table; None while the server starts (after ``wait`` seconds) or when the
    clients could never be read."""
    registry: AllowedOrigins | None = getattr(state, "origins", None)
    if registry is None:
        with contextlib.suppress(Exception):  # not started in time, or never will be
            await asyncio.wait_for(state.startup.wait(), timeout=wait)
        registry = getattr(state, "origins", None)
    if registry is None:
        return None
    try:
        return await registry.table()
    except registry.unavailable:
        return None


def _with_headers(send: Send, added: dict[str, str]) -> Send:
    """``send`` that adds ``added`` and ``Vary: Origin`` to the answer's head."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            head = MutableHeaders(scope=message)
            head.add_vary_header("Origin")
            head.update(added)
        await send(message)

    return sending
