"""R4 websocket Subscriptions: the sockets bound in this process, and the outbox reader that
pings them.

Why each process reads the outbox itself: the ``subscriptions`` consumer runs in one
process at a time (under its lease, ``events/runner.py``), but a client's socket is held by
whichever worker accepted its connection (``FHIR_WORKERS`` > 1, or several replicas), and a
socket cannot be handed to another process. So every process runs its own small reader,
only while sockets are bound in it: it starts at the outbox's last event when the first
socket binds, reads every event after it in number order, judges each for the websocket
Subscriptions bound here (``judge.py``: the criteria and the owner's access, as for every
channel) and sends ``ping <id>`` to their sockets. It holds no lease and writes no cursor:
reading the outbox changes nothing, and every process sees every committed event, so a
socket gets its pings whichever worker holds it. The cost is one outbox query per
``FHIR_EVENTS_POLL_SECONDS`` in each process that has bound sockets.

Delivery is live, as R4's websocket channel is: a socket gets the events committed while
it is bound; what a client missed while it had none it reads with ``$events``. A socket
that does not take a ping within ``FHIR_SUBSCRIPTION_TIMEOUT`` is closed. When the
Subscription changes, it is read again; once it is no longer active on a websocket channel
(off, deleted, rewritten) its sockets are closed.

A binding lasts as long as the access token it was made with: once that token's ``exp``
has passed, the socket gets no more pings for it and is told so, ``error <id> <why>``
(the channel's refusal message); the socket stays open, so the client sends a fresh
``bearer <token>`` and ``bind <id>`` again to resume (``api/websocket.py``). What was
committed in between is read with ``$events``. The reader checks expiries at each round,
so a binding ends within ``FHIR_EVENTS_POLL_SECONDS`` of its token, and never pings past it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from contextlib import suppress
from typing import Protocol

import orjson

from fhir_server.core.cancel import cancel_requested
from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.events.runner import pause_after
from fhir_server.observability import tracing
from fhir_server.storage.repository import Repository
from fhir_server.subscriptions.active import Active, read_active
from fhir_server.subscriptions.judge import Judge
from fhir_server.subscriptions.notification import Pending
from fhir_server.subscriptions.traced import delivery_span

log = logging.getLogger("fhir_server.subscriptions")
PAGE = 100
GONE = 1000  # the websocket close code once the Subscription no longer notifies here
EXPIRED = "access token expired: send 'bearer <token>' and 'bind {id_}' again"


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class SocketHub:
    def __init__(self, *, repo: Repository, settings: Settings) -> None:
        self.repo, self.settings = repo, settings
        # Subscription id -> its sockets here, each with its binding's end (the token's exp)
        self.bound: dict[str, dict[Socket, float]] = {}
        self.subscriptions: dict[str, Active] = {}
        self.after = 0
        self.task: asyncio.Task[None] | None = None

    async def bind(self, active: Active, socket: Socket, *, until: float = math.inf) -> None:
        """Ping ``socket`` for ``active`` until ``until`` (epoch seconds: the binding token's
        expiry; a socket bound again gets the new one)."""
        if self.task is None or self.task.done():
            self.after = await self.repo.last_event()
            self.task = asyncio.create_task(self._read(), name="subscriptions:sockets")
        self.subscriptions[active.id_] = active
        self.bound.setdefault(active.id_, {})[socket] = until

    def unbind(self, id_: str, socket: Socket) -> None:
        sockets = self.bound.get(id_)
        if sockets is None:
            return
        sockets.pop(socket, None)
        if not sockets:
            del self.bound[id_]
            self.subscriptions.pop(id_, None)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def _read(self) -> None:
        """Until no socket is bound here: read the outbox on, ping what matches."""
        failures = 0
        while self.bound and not cancel_requested():  # the driver may swallow a stop
            try:
                await self._expire()
                changes = await self.repo.events(after=self.after, limit=PAGE)
                if not changes:
                    await asyncio.sleep(self.settings.fhir_events_poll_seconds)
                    continue
                judge = Judge(self.repo, self.settings)
                for change in changes:
                    if change.type_ == "Subscription" and change.id_ in self.bound:
                        await self._changed(change.id_)
                    for active in list(self.subscriptions.values()):
                        pending = await judge.pending(active, change)
                        if pending is not None:
                            await self._ping(active, pending)
                    self.after = change.number
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database briefly away: read again
                failures += 1
                log.warning("websocket reader failed error=%s", type(error).__name__)
                await asyncio.sleep(pause_after(failures))

    async def _expire(self) -> None:
        """End the bindings whose token has expired, telling each socket why."""
        now = time.time()
        for id_, sockets in list(self.bound.items()):
            for socket, until in list(sockets.items()):
                if until <= now:
                    self.unbind(id_, socket)
                    log.info("websocket binding expired subscription=%s", id_)
                    with suppress(Exception):
                        async with asyncio.timeout(self.settings.fhir_subscription_timeout):
                            await socket.send_text(f"error {id_} {EXPIRED.format(id_=id_)}")

    async def _changed(self, id_: str) -> None:
        current = await self.repo.current(type_="Subscription", id_=id_)
        resource = orjson.loads(current.text) if current and current.text else {}
        try:
            if resource.get("status") not in ("requested", "active"):
                raise LookupError(f"Subscription/{id_} is {resource.get('status', 'deleted')}")
            active = await read_active(self.repo.records, self.settings, id_=id_,
                                       resource=resource)
            if active.hook.type_ != "websocket":
                raise LookupError(f"Subscription/{id_} is no longer on a websocket channel")
        except (LookupError, FhirError) as why:
            reason = str(why) if isinstance(why, LookupError) else why.diagnostics
            for socket in list(self.bound.get(id_, ())):
                self.unbind(id_, socket)
                with suppress(Exception):
                    await socket.close(GONE, reason[:120])
            return
        self.subscriptions[id_] = active

    async def _ping(self, active: Active, pending: Pending) -> None:
        id_ = active.id_
        await self._expire()  # a round can outlast a token: never ping past its exp
        with delivery_span(active, [pending]) as span:  # traced.py: when tracing
            dropped = False
            for socket in list(self.bound.get(id_, ())):
                try:
                    async with asyncio.timeout(self.settings.fhir_subscription_timeout):
                        await socket.send_text(f"ping {id_}")
                except Exception as error:  # gone or too slow: it binds again
                    dropped = True
                    log.info("websocket dropped subscription=%s error=%s", id_,
                             type(error).__name__)
                    self.unbind(id_, socket)
                    with suppress(Exception):
                        await socket.close(1011, "ping not taken")
            tracing.set_outcome(span, "dropped" if dropped else "delivered", error=dropped)
