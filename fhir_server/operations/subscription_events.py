"""``Subscription/[id]/$events`` and ``Subscription/[id]/$status``, shaped as the R4
Subscriptions Backport IG (STU 1.1) shapes them: a ``SubscriptionStatus``-shaped
``Parameters`` leading a ``history`` Bundle.

``$events`` catches up by event number: the outbox's events from ``eventsSinceNumber``
(default: the first the Subscription has not been delivered) to ``eventsUntilNumber``
(default: the last committed), judged exactly as for a notification (the Subscription's
criteria, its creator's access), at most ``MAX_EVENTS`` per call; a receiver pages on with
``eventsSinceNumber`` = the last ``event-number`` + 1. ``content`` chooses what comes with
each event: ``id-only`` (the default: the focus reference), ``full-resource`` (the version
of the event as well) or ``empty``. Only what the outbox still keeps can be read
(``FHIR_EVENTS_RETENTION``; an active Subscription's undelivered events are always kept).
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.core.errors import Invalid, NotFound
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.storage.model import instant
from fhir_server.subscriptions.active import read_active
from fhir_server.subscriptions.judge import Judge
from fhir_server.subscriptions.state import cursor

MAX_EVENTS = 100
PAGE = 500
CONTENTS = ("empty", "id-only", "full-resource")


async def _subscription(call: Call) -> dict[str, Any]:
    assert call.id_ is not None
    current = await call.repo.current(type_="Subscription", id_=call.id_)
    if current is None or current.text is None:
        raise NotFound(f"Subscription/{call.id_} is not known")
    resource: dict[str, Any] = orjson.loads(current.text)
    return resource


def _status(call: Call, resource: dict[str, Any], kind: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        # A classic Subscription has criteria, not a topic: no topic parameter.
        {"name": "subscription", "valueReference": {"reference": f"Subscription/{call.id_}"}},
        {"name": "status", "valueCode": resource.get("status", "")},
        {"name": "type", "valueCode": kind}]
    if resource.get("error"):
        parameters.append({"name": "error", "valueCodeableConcept": {
            "text": resource["error"]}})
    return {"resourceType": "Parameters", "parameter": parameters}


def _number(call: Call, name: str) -> int | None:
    value = call.one(name)
    if value is None:
        return None
    text = str(value)
    if not text.isdigit() or len(text) > 18:
        raise Invalid(f"{name} must be a whole number", expression=[name])
    return int(text)


async def run_events(call: Call) -> dict[str, Any]:
    assert call.id_ is not None
    resource = await _subscription(call)
    content = call.one("content") or "id-only"
    if content not in CONTENTS:
        raise Invalid(f"content must be one of {', '.join(CONTENTS)}", expression=["content"])
    since = _number(call, "eventsSinceNumber")
    if since is None:
        since = (await cursor(call.repo.records, call.id_) or 0) + 1
    until = _number(call, "eventsUntilNumber") or await call.repo.last_event()
    active = await read_active(call.repo.records, call.settings, id_=call.id_,
                               resource=resource)
    judge = Judge(call.repo, call.settings)
    status = _status(call, resource, "query-event")
    entries: list[dict[str, Any]] = []
    found = 0
    after = since - 1
    while after < until and found < MAX_EVENTS:
        changes = [c for c in await call.repo.events(after=after, limit=PAGE)
                   if c.number <= until]
        if not changes:
            break
        for change in changes:
            after = change.number
            if await judge.pending(active, change) is None:
                continue
            stored = await call.repo.version(type_=change.type_, id_=change.id_,
                                             version=change.version)
            body = orjson.loads(stored.text) if stored is not None and stored.text else None
            if not await call.may_see(change.type_, body):
                continue
            reference = f"{change.type_}/{change.id_}/_history/{change.version}"
            event: list[dict[str, Any]] = [
                {"name": "event-number", "valueString": str(change.number)},
                {"name": "timestamp", "valueInstant": instant(change.at)}]
            if content != "empty":
                event.append({"name": "focus", "valueReference": {"reference": reference}})
            status["parameter"].append({"name": "notification-event", "part": event})
            if content == "full-resource":
                entries.append({"fullUrl": f"{call.settings.base_url}/{reference}",
                                "resource": body, "request": {
                                    "method": "PUT", "url": f"{change.type_}/{change.id_}"},
                                "response": {"status": "200"}})
            found += 1
            if found >= MAX_EVENTS:
                break
    return {"resourceType": "Bundle", "type": "history", "entry": [
        {"fullUrl": f"urn:uuid:status-{call.id_}", "resource": status,
         "request": {"method": "GET", "url": f"Subscription/{call.id_}/$events"},
         "response": {"status": "200"}}, *entries]}


async def run_status(call: Call) -> dict[str, Any]:
    resource = await _subscription(call)
    status = _status(call, resource, "query-status")
    return {"resourceType": "Bundle", "type": "searchset", "total": 1,
            "entry": [{"resource": status, "search": {"mode": "match"}}]}


SUBSCRIPTION_EVENTS = Operation(
    id="Subscription-events", code="events", title="Catch up on a Subscription's events",
    description="The events that matched this Subscription, by event number (from "
    "eventsSinceNumber, default the first not delivered, to eventsUntilNumber, default the "
    f"last), {MAX_EVENTS} at most per call, as a history Bundle led by a "
    "SubscriptionStatus-shaped Parameters (R4 Subscriptions Backport IG).",
    resource=("Subscription",), type_level=False, instance=True, affects_state=False,
    base="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
    requires=(("Subscription", "r"),),
    parameters=(
        Param("eventsSinceNumber", "in", 0, "1", "string", "The first event number"),
        Param("eventsUntilNumber", "in", 0, "1", "string", "The last event number"),
        Param("content", "in", 0, "1", "code", "empty, id-only (default) or full-resource"),
        Param("return", "out", 1, "1", "Bundle", "The events, led by the status"),
    ),
    run=run_events)

SUBSCRIPTION_STATUS = Operation(
    id="Subscription-status", code="status", title="A Subscription's status",
    description="The Subscription's status (and its error) as a SubscriptionStatus-shaped "
    "Parameters in a searchset Bundle (R4 Subscriptions Backport IG).",
    resource=("Subscription",), type_level=False, instance=True, affects_state=False,
    base="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
    requires=(("Subscription", "r"),),
    parameters=(Param("return", "out", 1, "1", "Bundle", "The status"),),
    run=run_status)
