"""Which web origins may use which clients from a browser (CORS): ``AllowedOrigins``.

An origin is allowed when it is one of ``FHIR_CORS_ORIGINS`` (for every client's tokens)
or one of a registered client's ``web_origins`` (its redirect URIs' origins and its
``--origin`` values: for that client's tokens only). A preflight carries no token, so it
is answered for the union of them all; the actual request, once its client is known (the
access token's, or the one that authenticates at ``/auth/token``), must come from an
origin of that client (``permits``).

The clients are read from the database at the first cross-origin request and again
when ``FHIR_CORS_REFRESH_SECONDS`` have passed since the last read (so a client added by
``fhir-server clients add`` while the server runs is allowed from then on); requests in
between cost no database round trip. While the database cannot be read, the last table
read is kept (before the first read succeeds, the storage error is raised: a 503).

``api/cors.py`` puts a cross-origin request's ``Origin`` on ``request.state.cross_origin``;
``origin_refusal`` is what the FHIR routes and the token endpoints ask of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from starlette.requests import Request

from fhir_server.auth.clients import Client
from fhir_server.core.config import Settings
from fhir_server.storage.auth_store import AuthStore

log = logging.getLogger("fhir_server.auth")


@dataclass(frozen=True)
class OriginTable:
    """Every allowed origin, and for each the clients that may be used from it."""

    everyone: frozenset[str]  # FHIR_CORS_ORIGINS: any client
    clients_by_origin: dict[str, frozenset[str]] = field(default_factory=dict)

    def allows(self, origin: str) -> bool:
        return origin in self.everyone or origin in self.clients_by_origin

    def permits(self, origin: str, client_id: str) -> bool:
        return origin in self.everyone or client_id in self.clients_by_origin.get(origin, ())


def origin_table(*, clients: list[Client], everyone: tuple[str, ...]) -> OriginTable:
    by_origin: dict[str, set[str]] = {}
    for client in clients:
        for origin in client.web_origins:
            by_origin.setdefault(origin, set()).add(client.client_id)
    return OriginTable(everyone=frozenset(everyone),
                       clients_by_origin={o: frozenset(ids) for o, ids in by_origin.items()})


class AllowedOrigins:
    """The origin table of the registered clients, re-read at most every refresh interval
    (``app.state.origins``)."""

    def __init__(self, *, store: AuthStore, settings: Settings,
                 unavailable: tuple[type[Exception], ...] = ()) -> None:
        self.store = store
        self.everyone = settings.cors_origins
        self.refresh = settings.fhir_cors_refresh_seconds
        self.unavailable = unavailable
        self._table: OriginTable | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def table(self) -> OriginTable:
        """The current table (one of ``unavailable`` when none could be read yet)."""
        stale = self._table is None or time.monotonic() - self._read_at >= self.refresh
        # One read at a time: while it runs, the others use the last table (the very first
        # read they wait for).
        if stale and (self._table is None or not self._lock.locked()):
            async with self._lock:
                if self._table is None or time.monotonic() - self._read_at >= self.refresh:
                    await self._read()
        assert self._table is not None
        return self._table

    async def _read(self) -> None:
        try:
            docs = await self.store.all(kind="clients")
        except self.unavailable as exc:
            if self._table is None:
                raise
            log.warning("reading the clients' CORS origins failed error=%s", type(exc).__name__)
            self._read_at = time.monotonic()  # keep the last table; try again in a refresh
            return
        self._table = origin_table(clients=[Client.from_doc(d) for d in docs],
                                   everyone=self.everyone)
        self._read_at = time.monotonic()


async def origin_refusal(request: Request, client_id: str) -> str | None:
    """Why ``client_id`` may not be used by this cross-origin request (None: it may, or the
    request is not cross-origin: no ``Origin``, or the server's own)."""
    origin: str | None = getattr(request.state, "cross_origin", None)
    if origin is None:
        return None
    registry: AllowedOrigins = request.app.state.origins
    if (await registry.table()).permits(origin, client_id):
        return None
    return (f"client {client_id} may not be used from the web origin {origin[:200]}: it is "
            "neither one of the client's origins (its redirect URIs' and --origin) nor in "
            "FHIR_CORS_ORIGINS")
