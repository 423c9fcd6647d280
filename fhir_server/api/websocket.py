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
as for REST. A socket keeps its binding while it is open; a revoked token's bindings end
when the Subscription is next written.
"""

from __future__ import annotations

import logging

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from fhir_server.api.cors import cross_origin
from fhir_server.auth.access import Access
from fhir_server.auth.principal import Principal, principal_of
from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError, Forbidden, NotFound, Unauthorized
from fhir_server.subscriptions.active import Active, read_active

log = logging.getLogger("fhir_server.subscriptions")
PATH = "/fhir/websocket"
POLICY = 1008  # the websocket close code for a refused token
TRY_LATER = 1013


def websocket_url(base_url: str) -> str:
    """The websocket endpoint advertised for a server whose FHIR base is ``base_url``."""
    scheme, sep, rest = base_url.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}{sep}{rest.rstrip('/')}/websocket"


async def _principal(websocket: WebSocket, token: str) -> Principal:
    try:
        grant = await websocket.app.state.auth.verify_access_token(token.strip())
    except Unauthorized:
        raise Unauthorized("The access token is invalid, expired or revoked") from None
    principal = principal_of(grant)
    origin = cross_origin(websocket.scope, websocket.headers,
                          websocket.app.state.settings.base_url)
    if origin is not None and not (await websocket.app.state.origins.table()).permits(
            origin, principal.client_id):
        raise Forbidden(f"client {principal.client_id} may not be used from this web origin")
    return principal


async def _bindable(websocket: WebSocket, principal: Principal | None, id_: str) -> Active:
    """The Subscription ``id_`` when the token may read it and it notifies over websocket."""
    settings: Settings = websocket.app.state.settings
    repo = websocket.app.state.repo
    if settings.fhir_auth != "off" and principal is None:
        raise Unauthorized("Send the access token first: the Authorization header of the "
                           "handshake, or a 'bearer <token>' message")
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
    header = websocket.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise Unauthorized("The Authorization header must be 'Bearer <token>'")
            principal = await _principal(websocket, token)
        except FhirError:
            await websocket.close(POLICY, "access token refused")
            return
    await websocket.accept()
    bound: list[Active] = []
    try:
        while True:
            verb, _, argument = (await websocket.receive_text()).strip().partition(" ")
            argument = argument.strip()
            if verb == "bearer" and principal is None and not bound:
                try:
                    principal = await _principal(websocket, argument)
                except FhirError:
                    await websocket.close(POLICY, "access token refused")
                    return
            elif verb == "bind" and argument:
                try:
                    active = await _bindable(websocket, principal, argument)
                except FhirError as refused:
                    await websocket.send_text(f"error {argument[:64]} {refused.diagnostics}")
                    continue
                await app.state.sockets.bind(active, websocket)
                bound.append(active)
                await websocket.send_text(f"bound {active.id_}")
            else:
                await websocket.send_text("error expected 'bind <subscription id>'")
    except WebSocketDisconnect:
        pass
    finally:
        for active in bound:
            app.state.sockets.unbind(active.id_, websocket)
