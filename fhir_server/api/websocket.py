"""``[base]/websocket``: R4's websocket channel for Subscriptions.

A client connects, sends ``bind <subscription-id>`` and is answered ``bound <id>``; then
it gets ``ping <id>`` for each event the Subscription matches (it reads the resources with
its credentials, or ``$events``). A refused bind is answered ``error <id> <why>`` and the
socket stays open. The URL is advertised in the CapabilityStatement
(``capabilitystatement-websocket``). Sockets are held by the worker that accepted them and
pinged by that process's reader (``subscriptions/sockets.py``, which says why).

Authorization is the REST one (``auth/enforce.py``): the access token is verified by the
same code, and binding needs a token that may read that Subscription (its scopes, and a
patient token's compartment or a restricted token's terms). The token comes either

* in the ``Authorization: Bearer <token>`` header of the opening handshake (clients that
  can set headers: servers, native apps, the ``websockets`` library), or
* as the first message, ``bearer <token>`` (browsers, whose WebSocket API cannot set
  headers).

Never in the URL (``?access_token=``): URLs are written to access logs, proxy logs and
browser history, where a bearer token must not be. A browser's connection from another
origin is refused unless that origin is one of the token's client's (``auth/origins.py``),
as for REST.

A binding lasts until the token it was made with expires (its ``exp``): then the socket
gets ``error <id> access token expired: ...`` and no more pings for it
(``subscriptions/sockets.py``). The socket stays open: ``bearer <fresh token>`` (at any
time, replacing the token, whichever way it came) and ``bind <id>`` again resume it. A
``bind`` with an expired token is refused the same way. A revoked token's bindings end
when the Subscription is next written, or at its expiry.
"""

from __future__ import annotations

import logging
import math
import time

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from fhir_server.api.cors import cross_origin
from fhir_server.auth.access import Access
from fhir_server.auth.principal import Principal, principal_of
from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError, Forbidden, NotFound, Unauthorized
from fhir_server.subscriptions.active import Active, read_active
from fhir_server.subscriptions.sockets import EXPIRED

log = logging.getLogger("fhir_server.subscriptions")
PATH = "/fhir/websocket"
POLICY = 1008  # the websocket close code for a refused token
TRY_LATER = 1013


def websocket_url(base_url: str) -> str:
    """The websocket endpoint advertised for a server whose FHIR base is ``base_url``."""
    scheme, sep, rest = base_url.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}{sep}{rest.rstrip('/')}/websocket"


async def _principal(websocket: WebSocket, token: str) -> tuple[Principal, float]:
    """The token's principal and its expiry (epoch seconds)."""
    try:
        grant, until = await websocket.app.state.auth.verify_access_token_until(token.strip())
    except Unauthorized:
        raise Unauthorized("The access token is invalid, expired or revoked") from None
    principal = principal_of(grant)
    origin = cross_origin(websocket.scope, websocket.headers,
                          websocket.app.state.settings.base_url)
    if origin is not None and not (await websocket.app.state.origins.table()).permits(
            origin, principal.client_id):
        raise Forbidden(f"client {principal.client_id} may not be used from this web origin")
    return principal, float(until)


async def _bindable(websocket: WebSocket, principal: Principal | None, id_: str,
                    until: float) -> Active:
    """The Subscription ``id_`` when the token may read it and it notifies over websocket."""
    settings: Settings = websocket.app.state.settings
    repo = websocket.app.state.repo
    if settings.fhir_auth != "off" and principal is None:
        raise Unauthorized("Send the access token first: the Authorization header of the "
                           "handshake, or a 'bearer <token>' message")
    if until <= time.time():
        raise Unauthorized(EXPIRED.format(id_=id_))
    access = Access(principal=principal, repo=repo, settings=settings)
    access.require("Subscription", "r")
    current = await repo.current(type_="Subscription", id_=id_)
    if (current is None or current.text is None
            or not await access.admits_stored("Subscription", "r", id_)):
        raise NotFound(f"Subscription/{id_} is not known")
    resource = orjson.loads(current.text)
    if resource.get("status") not in ("requested", "active"):
        raise NotFound(f"Subscription/{id_} is {resource.get('status')}, not active")
    active = await read_active(repo.records, settings, id_=id_, resource=resource)
    if active.hook.type_ != "websocket":
        raise NotFound(f"Subscription/{id_} does not notify over a websocket channel")
    return active


async def subscription_socket(websocket: WebSocket) -> None:
    app = websocket.app
    if not app.state.startup.done:
        await websocket.close(TRY_LATER, "starting")
        return
    principal: Principal | None = None
    until = math.inf  # the token's expiry (none with FHIR_AUTH=off)
    header = websocket.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise Unauthorized("The Authorization header must be 'Bearer <token>'")
            principal, until = await _principal(websocket, token)
        except FhirError:
            await websocket.close(POLICY, "access token refused")
            return
    await websocket.accept()
    bound: set[str] = set()
    try:
        while True:
            verb, _, argument = (await websocket.receive_text()).strip().partition(" ")
            argument = argument.strip()
            if verb == "bearer":  # the first token, or a fresh one for the next binds
                try:
                    principal, until = await _principal(websocket, argument)
                except FhirError:
                    await websocket.close(POLICY, "access token refused")
                    return
            elif verb == "bind" and argument:
                try:
                    active = await _bindable(websocket, principal, argument, until)
                except FhirError as refused:
                    await websocket.send_text(f"error {argument[:64]} {refused.diagnostics}")
                    continue
                await app.state.sockets.bind(active, websocket, until=until)
                bound.add(active.id_)
                await websocket.send_text(f"bound {active.id_}")
            else:
                await websocket.send_text("error expected 'bind <subscription id>'")
    except WebSocketDisconnect:
        pass
    finally:
        for id_ in bound:
            app.state.sockets.unbind(id_, websocket)
