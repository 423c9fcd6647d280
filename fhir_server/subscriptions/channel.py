"""A Subscription's channel: read, and checked before anything is sent.

* ``channel.type``: ``rest-hook``; ``websocket`` (R4's: a client binds a socket to the
  Subscription and gets ``ping <id>`` per event, ``api/websocket.py``; no endpoint, no
  headers, no payload, and classic criteria only: a topic-based Subscription's Bundles go
  over rest-hook); or ``email`` (``endpoint`` ``mailto:<address>``, ``email_notice.py``);

A rest-hook's:

* ``channel.endpoint`` must be an absolute https URL, or http to a host listed in
  ``FHIR_SUBSCRIPTION_ALLOWED_HOSTS``; an IP address the peer guard refuses (loopback,
  private, link-local with the cloud metadata address, ...) is refused at once unless
  listed. A host name is resolved when a notification is sent, once, and the address it
  resolves to is checked and connected to (``core/peer_guard.py``);
* ``channel.header``: each ``Name: value``, sent with every notification and never logged;
* ``channel.payload``: absent (a notification is a POST with no body, R4's "ping") or
  ``application/fhir+json`` (R4: a PUT of the resource, in the version of the event, to
  ``[endpoint]/[type]/[id]``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fhir_server.core.config import Settings
from fhir_server.core.errors import Unprocessable
from fhir_server.core.peer_guard import PeerGuard, why_refused
from fhir_server.subscriptions.email_notice import check_mailto

FHIR_JSON = "application/fhir+json"
PAYLOADS = {FHIR_JSON: FHIR_JSON, "application/json": FHIR_JSON,
            "application/fhir+json;fhirversion=4.0": FHIR_JSON}
SETTING = "FHIR_SUBSCRIPTION_ALLOWED_HOSTS"
HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*)$")
# Headers a Subscription may not set: the server sets them (the signature, the event
# number, the body's type and length) or they change where a request goes.
RESERVED = frozenset({"host", "content-length", "content-type", "transfer-encoding",
                      "connection", "x-signature", "x-fhir-event-number"})


@dataclass(frozen=True)
class Channel:
    type_: str  # rest-hook | websocket | email
    endpoint: str = ""  # a rest-hook's URL, an email's address
    headers: tuple[tuple[str, str], ...] = ()
    payload: str | None = None  # None: no body (ping); else application/fhir+json

    @property
    def destination(self) -> str:
        """Where notifications go, as the audit trail names it: a rest-hook's host, an
        email's domain (never the full URL or address: a URL may carry a token)."""
        if self.type_ == "rest-hook":
            return urlsplit(self.endpoint).hostname or ""
        if self.type_ == "email":
            return self.endpoint.rpartition("@")[2]
        return ""


def guard(allowed_hosts: str) -> PeerGuard:
    return PeerGuard.from_setting(allowed_hosts, name=SETTING)


def _where(field: str) -> list[str]:
    return [f"Subscription.channel.{field}"]


def parse_channel(resource: dict[str, Any], settings: Settings, *,
                  topic_based: bool = False) -> Channel:
    allowed = guard(settings.fhir_subscription_allowed_hosts)
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        raise Unprocessable("Subscription.channel is required", expression=["Subscription.channel"])
    kind = channel.get("type")
    if kind == "websocket":
        if topic_based:
            raise Unprocessable("A topic-based Subscription is notified over rest-hook; "
                                "websocket channels carry R4 pings of classic criteria",
                                expression=_where("type"))
        return Channel(type_="websocket")
    if kind == "email":
        return Channel(type_="email", endpoint=check_mailto(channel.get("endpoint"), settings))
    if kind != "rest-hook":
        raise Unprocessable("This server delivers Subscriptions over rest-hook, websocket "
                            "and email channels", expression=_where("type"))
    endpoint = check_endpoint(channel.get("endpoint"), allowed=allowed)
    headers = []
    for i, raw in enumerate(channel.get("header") or []):
        match = HEADER.match(raw) if isinstance(raw, str) else None
        if match is None:  # the value is not echoed: it may be a credential
            raise Unprocessable("Each Subscription.channel.header is 'Name: value'",
                                expression=_where(f"header[{i}]"))
        if match.group(1).lower() in RESERVED:
            raise Unprocessable(f"Subscription.channel.header may not set {match.group(1)}",
                                expression=_where(f"header[{i}]"))
        headers.append((match.group(1), match.group(2)))
    payload = channel.get("payload")
    if payload is not None:
        if not isinstance(payload, str) or payload.replace(" ", "").lower() not in PAYLOADS:
            raise Unprocessable("Subscription.channel.payload is application/fhir+json, or "
                                "absent for notifications without content",
                                expression=_where("payload"))
        payload = FHIR_JSON
    return Channel(type_="rest-hook", endpoint=endpoint, headers=tuple(headers),
                   payload=payload)


def check_endpoint(url: Any, *, allowed: PeerGuard) -> str:
    if not isinstance(url, str) or not url:
        raise Unprocessable("Subscription.channel.endpoint is required for a rest-hook",
                            expression=_where("endpoint"))
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        parts, port = urlsplit(""), 0
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host or parts.username or parts.password:
        raise Unprocessable("Subscription.channel.endpoint must be an absolute https URL "
                            "without credentials", expression=_where("endpoint"))
    listed = allowed.listed(host, port)
    if parts.scheme == "http" and not listed:
        raise Unprocessable(f"Subscription.channel.endpoint must use https ({host} is not "
                            f"listed in {SETTING})", expression=_where("endpoint"))
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url  # a name: its address is checked when it is resolved, at each connection
    refused = why_refused(address)
    if refused is not None and not listed:
        raise Unprocessable(f"Subscription.channel.endpoint is a {refused} address, which "
                            f"this server does not call unless listed in {SETTING}",
                            expression=_where("endpoint"))
    return url
