"""``Subscription/[id]/$events`` and ``Subscription/[id]/$status``, shaped as the R4
Subscriptions Backport IG (STU 1.1) shapes them: a ``SubscriptionStatus``-shaped
``Parameters`` leading a ``history`` Bundle.

``$events`` catches up by the Subscription's own event numbers (1, 2, 3… without gaps,
``subscriptions/numbering.py``; a topic-based notification's ``event-number``): its events
from ``eventsSinceNumber`` (default: the first it has not been notified of) to
``eventsUntilNumber`` (default: the last committed), at most ``MAX_EVENTS`` per call, each
with the number it was (or will be) notified with (``subscriptions/numbered_events.py``:
the notified ones from its number log, the others judged exactly as for a notification:
the Subscription's criteria, its creator's access); a receiver pages on with
``eventsSinceNumber`` = the last ``event-number`` + 1. The caller sees only what it may
read; a number it may not see is skipped, never given to another event. ``content`` chooses what comes with
each event: ``id-only`` (the default: the focus reference, and an entry with its
``fullUrl`` and ``request``), ``full-resource`` (the version of the event as well) or
``empty``. A topic-based Subscription's answers name its topic. Only what the outbox still keeps can be read
(``FHIR_EVENTS_RETENTION``; an active Subscription's undelivered events are always kept).
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import orjson

from fhir_server.core.errors import Invalid, NotFound
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.subscriptions.active import read_active
from fhir_server.subscriptions.backport import is_topic_based, topic_of
from fhir_server.subscriptions.notification import Pending, Status, bundle, status_parameters
from fhir_server.subscriptions.numbered_events import numbered
from fhir_server.subscriptions.state import notified, position

MAX_EVENTS = 100
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
    after, count = await position(call.repo.records, call.id_) or (0, 0)
    since = _number(call, "eventsSinceNumber")
    since = count + 1 if since is None else max(since, 1)
    active = await read_active(call.repo.records, call.settings, id_=call.id_,
                               resource=resource)
    items: list[Pending] = []
    numbers: list[int] = []
    bodies: list[dict[str, Any] | None] = []
    async with aclosing(numbered(call.repo, call.settings, active, after=after, count=count,
                                 since=since, until=_number(call, "eventsUntilNumber"))
                        ) as found:
        async for number, pending in found:
            stored = await call.repo.version(type_=pending.type_, id_=pending.id_,
                                             version=pending.version)
            body = orjson.loads(stored.text) if stored is not None and stored.text else None
            if not await call.may_see(pending.type_, body):
                continue
            items.append(pending)
            numbers.append(number)
            bodies.append(body)
            if len(items) >= MAX_EVENTS:
                break
    return bundle(call.settings.base_url, await _status(call, resource), "query-event",
                  items, bodies, numbers=numbers, content=content, operation="$events")


async def run_status(call: Call) -> dict[str, Any]:
    resource = await _subscription(call)
    status = status_parameters(await _status(call, resource), "query-status", (), (),
                               content="empty")
    return {"resourceType": "Bundle", "type": "searchset", "total": 1,
            "entry": [{"resource": status, "search": {"mode": "match"}}]}


SUBSCRIPTION_EVENTS = Operation(
    id="Subscription-events", code="events", title="Catch up on a Subscription's events",
    description="The events that matched this Subscription, by its own event numbers "
    "(1, 2, 3... as notified; from "
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
