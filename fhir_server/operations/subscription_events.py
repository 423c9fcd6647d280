"""``Subscription/[id]/$events`` and ``Subscription/[id]/$status``, shaped as the R4
Subscriptions Backport IG (STU 1.1) shapes them: a ``SubscriptionStatus``-shaped
``Parameters`` leading a ``history`` Bundle.

``$events`` catches up by event number: the outbox's events from ``eventsSinceNumber``
(default: the first the Subscription has not been delivered) to ``eventsUntilNumber``
(default: the last committed), judged exactly as for a notification (the Subscription's
criteria, its creator's access), at most ``MAX_EVENTS`` per call; a receiver pages on with
``eventsSinceNumber`` = the last ``event-number`` + 1. ``content`` chooses what comes with
each event: ``id-only`` (the default: the focus reference, and an entry with its
``fullUrl`` and ``request``), ``full-resource`` (the version of the event as well) or
``empty``. A topic-based Subscription's answers name its topic. Only what the outbox still keeps can be read
(``FHIR_EVENTS_RETENTION``; an active Subscription's undelivered events are always kept).
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.core.errors import Invalid, NotFound
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.subscriptions.active import read_active
from fhir_server.subscriptions.backport import is_topic_based, topic_of
from fhir_server.subscriptions.judge import Judge
from fhir_server.subscriptions.notification import Pending, Status, bundle, status_parameters
from fhir_server.subscriptions.state import cursor, notified

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


async def _status(call: Call, resource: dict[str, Any]) -> Status:
    """The Subscription's side: a topic-based one names its topic (a classic one has
    criteria, not a topic) and counts its events."""
    assert call.id_ is not None
    topic = None
    if is_topic_based(resource):
        found = topic_of(str(resource.get("criteria")), base_url=call.settings.base_url)
        topic = None if found is None else found.canonical
    return Status(id_=call.id_, status=str(resource.get("status", "")), topic=topic,
                  since_start=await notified(call.repo.records, call.id_),
                  error=resource.get("error") or None)


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
    items: list[Pending] = []
    bodies: list[dict[str, Any] | None] = []
    after = since - 1
    while after < until and len(items) < MAX_EVENTS:
        changes = [c for c in await call.repo.events(after=after, limit=PAGE)
                   if c.number <= until]
        if not changes:
            break
        for change in changes:
            after = change.number
            pending = await judge.pending(active, change)
            if pending is None:
                continue
            stored = await call.repo.version(type_=change.type_, id_=change.id_,
                                             version=change.version)
            body = orjson.loads(stored.text) if stored is not None and stored.text else None
            if not await call.may_see(change.type_, body):
                continue
            items.append(pending)
            bodies.append(body)
            if len(items) >= MAX_EVENTS:
                break
    return bundle(call.settings.base_url, await _status(call, resource), "query-event",
                  items, bodies, content=content, operation="$events")


async def run_status(call: Call) -> dict[str, Any]:
    resource = await _subscription(call)
    status = status_parameters(await _status(call, resource), "query-status", (),
                               content="empty")
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
