"""The notification Bundle of the R4 Subscriptions Backport IG (STU 1.1), built once for the
topic-based notifications (``worker.py``) and for ``$events``/``$status``.

A ``history`` Bundle (profile ``backport-subscription-notification-r4``) whose first entry
is the ``SubscriptionStatus``-shaped ``Parameters`` (profile ``backport-subscription-
status-r4``): ``subscription``, ``topic`` (topic-based only), ``status``, ``type``
(``handshake``, ``heartbeat``, ``event-notification``, ``query-status``, ``query-event``),
``events-since-subscription-start``, an ``error`` when there is one, and a
``notification-event`` per event (``event-number``: its number in this Subscription,
1, 2, 3… without gaps (``numbering.py``), handed in beside the events; ``timestamp``: when
the change was committed; ``focus``: ``Type/id/_history/version``, except with ``empty``
content). The events follow as entries: ``id-only``,
``fullUrl`` and ``request`` alone; ``full-resource``, the version itself as well (the
caller has checked that its reader may see it).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from fhir_server.storage.model import instant, now_ms
from fhir_server.subscriptions.backport import NOTIFICATION_PROFILE, STATUS_PROFILE


@dataclass(frozen=True)
class Pending:
    """A change to notify: its event number and the version it wrote."""

    number: int
    type_: str
    id_: str
    version: int
    at: datetime  # when the change was committed
    trace: str | None = None  # the committing span's traceparent (``ChangeEvent.trace``)
    # The version's JSON as the judge read it, held while the Subscription's queue is
    # short so that no notification reads it again (None: read it again when needed).
    text: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Status:
    """The Subscription's side of a notification."""

    id_: str
    status: str
    topic: str | None = None  # the topic's canonical (None: a classic Subscription)
    since_start: int | None = None  # events notified since it started
    error: str | None = None


@lru_cache(maxsize=4096)
def _timestamp(at: datetime) -> str:
    """An event's instant as text, made once for all the Subscriptions notified of it."""
    return instant(at)


def _method(item: Pending) -> str:
    return "POST" if item.version == 1 else "PUT"


def status_parameters(status: Status, kind: str, items: Sequence[Pending],
                      numbers: Sequence[int], *, content: str) -> dict[str, Any]:
    """``numbers``: the events' numbers in this Subscription, in order."""
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"Subscription/{status.id_}"}}]
    if status.topic is not None:
        parameters.append({"name": "topic", "valueCanonical": status.topic})
    parameters += [{"name": "status", "valueCode": status.status},
                   {"name": "type", "valueCode": kind}]
    if status.since_start is not None:
        parameters.append({"name": "events-since-subscription-start",
                           "valueString": str(status.since_start)})
    for item, number in zip(items, numbers, strict=True):
        part: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(number)},
            {"name": "timestamp", "valueInstant": _timestamp(item.at)}]
        if content != "empty":
            part.append({"name": "focus", "valueReference": {
                "reference": f"{item.type_}/{item.id_}/_history/{item.version}"}})
        parameters.append({"name": "notification-event", "part": part})
    if status.error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": status.error}})
    return {"resourceType": "Parameters", "id": str(uuid.uuid4()),
            "meta": {"profile": [STATUS_PROFILE]}, "parameter": parameters}


def event_entries(base_url: str, items: Sequence[Pending],
                  bodies: Sequence[Any], *, content: str) -> list[dict[str, Any]]:
    """The events as entries: none for ``empty``; ``bodies`` (the versions, in order, as
    dicts or as ``orjson.Fragment`` of their stored JSON; None for one not read) only for
    ``full-resource``."""
    if content == "empty":
        return []
    out = []
    for item, body in zip(items, bodies, strict=True):
        entry: dict[str, Any] = {"fullUrl": f"{base_url}/{item.type_}/{item.id_}"}
        if content == "full-resource" and body is not None:
            entry["resource"] = body
        entry["request"] = {"method": _method(item), "url": f"{item.type_}/{item.id_}"}
        if "resource" in entry:
            entry["response"] = {"status": "201" if item.version == 1 else "200",
                                 "etag": f'W/"{item.version}"'}
        out.append(entry)
    return out


def bundle(base_url: str, status: Status, kind: str, items: Sequence[Pending],
           bodies: Sequence[Any], *, numbers: Sequence[int], content: str,
           operation: str = "$status") -> dict[str, Any]:
    """The notification (or ``$events``) Bundle; ``numbers``: the events' numbers in
    this Subscription."""
    parameters = status_parameters(status, kind, items, numbers, content=content)
    first = {"fullUrl": f"urn:uuid:{parameters['id']}", "resource": parameters,
             "request": {"method": "GET",
                         "url": f"{base_url}/Subscription/{status.id_}/{operation}"},
             "response": {"status": "200"}}
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()),
            "meta": {"profile": [NOTIFICATION_PROFILE]}, "type": "history",
            "timestamp": instant(now_ms()),
            "entry": [first, *event_entries(base_url, items, bodies, content=content)]}
