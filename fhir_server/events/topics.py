"""The journeys a change belongs to, read from the version it wrote and the one it replaced.

Each journey topic has an id (the last segment of its canonical URL, ``.../SubscriptionTopic/
<id>``; other tools rely on these names) and one rule, written here once. A rule compares
the resource before and after the change, so an update that leaves an appointment booked
is not "booked" again, and a rule reads only what it names (status, start, end).

| id | the change |
|---|---|
| appointment-booked | an Appointment becomes ``booked`` (created booked, or moved to it) |
| appointment-rescheduled | a ``booked`` Appointment stays booked with another start or end |
| appointment-cancelled | an Appointment becomes ``cancelled`` |
| encounter-finished | an Encounter becomes ``finished`` |
| invoice-issued | an Invoice becomes ``issued`` |
| claim-response | a ClaimResponse is written (any outcome: complete, partial, queued, error) |
| payment-posted | a PaymentReconciliation becomes ``active`` (a remittance or a payment posted) |
| eligibility-response | a CoverageEligibilityResponse is written |

Deletions belong to no journey. The history is immutable, so the topics of an event are
the same whenever they are read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from fhir_server.storage.model import ChangeEvent
from fhir_server.storage.repository import Repository

Doc = dict[str, Any]
Rule = Callable[[Doc | None, Doc], bool]


def _becomes(status: str) -> Rule:
    def rule(before: Doc | None, after: Doc) -> bool:
        return after.get("status") == status and (before or {}).get("status") != status

    return rule


def _rescheduled(before: Doc | None, after: Doc) -> bool:
    return (before is not None and before.get("status") == "booked"
            and after.get("status") == "booked"
            and (before.get("start"), before.get("end")) != (after.get("start"), after.get("end")))


def _written(before: Doc | None, after: Doc) -> bool:
    return True


# Per resource type: (topic id, rule) in the order topics are listed on an event.
RULES: dict[str, tuple[tuple[str, Rule], ...]] = {
    "Appointment": (("appointment-booked", _becomes("booked")),
                    ("appointment-rescheduled", _rescheduled),
                    ("appointment-cancelled", _becomes("cancelled"))),
    "Encounter": (("encounter-finished", _becomes("finished")),),
    "Invoice": (("invoice-issued", _becomes("issued")),),
    "ClaimResponse": (("claim-response", _written),),
    "PaymentReconciliation": (("payment-posted", _becomes("active")),),
    "CoverageEligibilityResponse": (("eligibility-response", _written),),
}

JOURNEY_TOPICS: tuple[str, ...] = tuple(topic for rules in RULES.values() for topic, _ in rules)
# The resource type each journey topic is about.
TOPIC_TYPES: dict[str, str] = {topic: type_ for type_, rules in RULES.items()
                               for topic, _ in rules}


def journey_topics(type_: str, before: Doc | None, after: Doc | None) -> tuple[str, ...]:
    """The journey topics of a change from ``before`` (None: no live version) to ``after``
    (None: a deletion)."""
    if after is None:
        return ()
    return tuple(topic for topic, rule in RULES.get(type_, ()) if rule(before, after))


async def topics_of(repo: Repository, change: ChangeEvent) -> tuple[str, ...]:
    """The journey topics of one outbox event, from the versions in the history."""
    if change.type_ not in RULES or change.action == "delete":
        return ()
    after = await repo.version(type_=change.type_, id_=change.id_, version=change.version)
    if after is None or after.text is None:
        return ()
    before = None
    if change.action == "update":
        previous = await repo.version(type_=change.type_, id_=change.id_,
                                      version=change.version - 1)
        if previous is not None and previous.text is not None:
            before = orjson.loads(previous.text)
    return journey_topics(change.type_, before, orjson.loads(after.text))
