"""A Subscription as the server reads it: what it watches, its channel and its owner.

A classic Subscription watches its ``criteria`` (``criteria.py``); a topic-based one
(``backport.py``) watches its topic, narrowed by its filter criteria. Both come down to a
resource type, an optional journey topic, and criteria that must all match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.auth.principal import Principal
from fhir_server.core.config import Settings
from fhir_server.storage.records import Records
from fhir_server.subscriptions.backport import TopicPlan, is_topic_based, parse_topic
from fhir_server.subscriptions.channel import Channel, parse_channel
from fhir_server.subscriptions.criteria import Criteria, parse_criteria
from fhir_server.subscriptions.state import principal_of, state_of


@dataclass(frozen=True)
class Watch:
    """What a Subscription is notified of."""

    type_: str
    criteria: tuple[Criteria, ...]  # all must match (classic: its criteria; topic: filters)
    topic: TopicPlan | None  # None: a classic Subscription

    @property
    def journey(self) -> str | None:
        return None if self.topic is None else self.topic.topic.journey


@dataclass(frozen=True)
class Active:
    id_: str
    watch: Watch
    hook: Channel  # where notifications go
    owner: Principal | None  # whose access confines its notifications (None: auth off)

    @property
    def topic(self) -> TopicPlan | None:
        return self.watch.topic


def read_watch(resource: dict[str, Any], settings: Settings) -> Watch:
    """The Subscription's criteria or topic (Unprocessable naming what is wrong)."""
    if is_topic_based(resource):
        plan = parse_topic(resource, base_url=settings.base_url)
        return Watch(type_=plan.topic.type_, criteria=plan.filters, topic=plan)
    criteria = parse_criteria(resource.get("criteria"), base_url=settings.base_url)
    return Watch(type_=criteria.type_, criteria=(criteria,), topic=None)


async def read_active(records: Records, settings: Settings, *, id_: str,
                      resource: dict[str, Any]) -> Active:
    """The Subscription's content read again (FhirError when it no longer passes, say the
    allow-list changed since it was written), with its owner from its record."""
    watch = read_watch(resource, settings)
    hook = parse_channel(resource, settings, topic_based=watch.topic is not None)
    owner = principal_of((await state_of(records, id_)).get("owner"))
    return Active(id_=id_, watch=watch, hook=hook, owner=owner)
