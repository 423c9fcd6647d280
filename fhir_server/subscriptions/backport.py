"""Topic-based Subscriptions as the R4 Subscriptions Backport IG (STU 1.1) writes them.

The server's topics, each a canonical under ``<FHIR_BASE_URL>/SubscriptionTopic/``:

* the journey topics of ``events/topics.py`` (``appointment-booked``, ``encounter-finished``,
  ``claim-response``...): a change is on the topic when that topic's rule says so;
* one per resource type (``.../SubscriptionTopic/Patient``): any create or update of a
  resource of that type (a deletion is no match: filters and access judge content).

R4 has no SubscriptionTopic resource: the IG lists a server's topics in its
CapabilityStatement (``capabilitystatement-subscriptiontopic-canonical``), which is where
clients discover them (``api/capability.py``).

A Subscription is topic-based when it carries the ``backport-subscription`` profile, or
when its ``criteria`` is a canonical URL: then ``criteria`` names the topic, its
``_criteria`` extensions ``backport-filter-criteria`` narrow it (each ``Type?params`` of
the topic's type, read and judged as classic criteria, ``criteria.py``; all must match),
``channel.payload`` is the MIME type (``application/fhir+json``) whose ``_payload``
extension ``backport-payload-content`` chooses what a notification carries (``empty``,
``id-only``, the default, or ``full-resource``), and the channel's extensions
``backport-heartbeat-period`` (seconds), ``backport-timeout`` (seconds) and
``backport-max-count`` (events per notification) tune the delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.core.errors import Unprocessable
from fhir_server.core.models import resource_types
from fhir_server.events.topics import JOURNEY_TOPICS, TOPIC_TYPES
from fhir_server.subscriptions.criteria import WHERE, Criteria, parse_criteria

IG = "http://hl7.org/fhir/uv/subscriptions-backport"
SD = f"{IG}/StructureDefinition"
PROFILE = f"{SD}/backport-subscription"
STATUS_PROFILE = f"{SD}/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{SD}/backport-subscription-notification-r4"
FILTER = f"{SD}/backport-filter-criteria"
CONTENT = f"{SD}/backport-payload-content"
HEARTBEAT = f"{SD}/backport-heartbeat-period"
TIMEOUT = f"{SD}/backport-timeout"
MAX_COUNT = f"{SD}/backport-max-count"
CAPABILITY_TOPIC = f"{SD}/capabilitystatement-subscriptiontopic-canonical"
CONTENTS = ("empty", "id-only", "full-resource")
MAX_FILTERS = 20
MAX_BATCH = 100  # events in one notification at most, whatever max-count asks
MAX_TIMEOUT = 120  # seconds


@dataclass(frozen=True)
class Topic:
    id_: str  # a journey topic's id, or a resource type
    canonical: str
    type_: str  # the resource type its events are about
    journey: str | None  # the journey topic's id; None: any change of the type


@dataclass(frozen=True)
class TopicPlan:
    """What a topic-based Subscription asks for."""

    topic: Topic
    filters: tuple[Criteria, ...]
    content: str  # empty | id-only | full-resource
    heartbeat: int | None  # seconds between heartbeats when idle; None: none
    timeout: float | None  # seconds to wait for the endpoint; None: the server's setting
    max_count: int  # events per notification


def topic_root(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/SubscriptionTopic/"


def topics(base_url: str) -> list[Topic]:
    """Every topic this server offers: the journeys, then one per resource type."""
    root = topic_root(base_url)
    journeys = [Topic(id_=t, canonical=root + t, type_=TOPIC_TYPES[t], journey=t)
                for t in JOURNEY_TOPICS]
    return [*journeys, *(Topic(id_=t, canonical=root + t, type_=t, journey=None)
                         for t in resource_types())]


def topic_of(canonical: str, *, base_url: str) -> Topic | None:
    root = topic_root(base_url)
    if not canonical.startswith(root):
        return None
    id_ = canonical[len(root):].split("|", 1)[0]  # a canonical may carry |version
    if id_ in TOPIC_TYPES:
        return Topic(id_=id_, canonical=root + id_, type_=TOPIC_TYPES[id_], journey=id_)
    if id_ in resource_types():
        return Topic(id_=id_, canonical=root + id_, type_=id_, journey=None)
    return None


def is_topic_based(resource: dict[str, Any]) -> bool:
    profiles = (resource.get("meta") or {}).get("profile") or []
    criteria = resource.get("criteria")
    return PROFILE in profiles or (isinstance(criteria, str)
                                   and criteria.startswith(("https://", "http://")))


def _extensions(element: Any, url: str) -> list[dict[str, Any]]:
    found = (element or {}).get("extension") if isinstance(element, dict) else None
    return [e for e in found or [] if isinstance(e, dict) and e.get("url") == url]


def _whole(channel: dict[str, Any], url: str, key: str, *, least: int) -> int | None:
    found = _extensions(channel, url)
    if not found:
        return None
    value = found[0].get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        name = url.rsplit("/", 1)[-1]
        raise Unprocessable(f"The {name} extension takes a whole number of at least {least}",
                            expression=["Subscription.channel.extension"])
    return value


def parse_topic(resource: dict[str, Any], *, base_url: str) -> TopicPlan:
    """The topic-based Subscription's topic, filters and channel tuning (Unprocessable
    naming the element that is wrong)."""
    canonical = resource.get("criteria")
    topic = topic_of(canonical, base_url=base_url) if isinstance(canonical, str) else None
    if topic is None:
        raise Unprocessable(f"Subscription.criteria names no topic this server offers: the "
                            f"topics are {topic_root(base_url)}<journey or resource type>, "
                            f"listed in the CapabilityStatement", expression=[WHERE])
    raw = _extensions(resource.get("_criteria"), FILTER)
    if len(raw) > MAX_FILTERS:
        raise Unprocessable(f"At most {MAX_FILTERS} filter criteria", expression=[WHERE])
    filters = []
    for item in raw:
        value = item.get("valueString")
        if not isinstance(value, str) or "?" not in value:
            raise Unprocessable("A backport-filter-criteria is a string Type?parameters",
                                expression=[WHERE])
        if value.partition("?")[0] != topic.type_:
            raise Unprocessable(f"The filter criteria of topic {topic.id_} are about "
                                f"{topic.type_}", expression=[WHERE])
        filters.append(parse_criteria(value, base_url=base_url))
    channel = resource.get("channel") if isinstance(resource.get("channel"), dict) else {}
    assert isinstance(channel, dict)
    contents = _extensions(channel.get("_payload"), CONTENT)
    content = contents[0].get("valueCode") if contents else "id-only"
    if content not in CONTENTS:
        raise Unprocessable(f"The payload content is one of {', '.join(CONTENTS)}",
                            expression=["Subscription.channel.payload"])
    heartbeat = _whole(channel, HEARTBEAT, "valueUnsignedInt", least=1)
    timeout = _whole(channel, TIMEOUT, "valueUnsignedInt", least=1)
    max_count = _whole(channel, MAX_COUNT, "valuePositiveInt", least=1)
    return TopicPlan(topic=topic, filters=tuple(filters), content=str(content),
                     heartbeat=heartbeat,
                     timeout=None if timeout is None else float(min(timeout, MAX_TIMEOUT)),
                     max_count=min(max_count or 1, MAX_BATCH))
