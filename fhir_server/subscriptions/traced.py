"""A Subscription's delivery attempt traced: one span per attempt (``subscription
deliver``), continuing the trace of the commit of each event it carries
(``observability/tracing.py``: the committing span's child, or a new trace linked to
every commit when a topic-based notification carries events of several).

Its attributes are identifiers: ``fhir.subscription`` (``Subscription/<id>``),
``fhir.subscription.channel``, the last event's number and the count, and the ``outcome``;
never the endpoint, a header or a body. While it runs it is the current span, so a
rest-hook request carries its ``traceparent`` (``notify.py``). A handshake or a heartbeat
carries no event and is not traced. Off, nothing is made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry.trace import SpanKind

from fhir_server.observability import tracing
from fhir_server.subscriptions.active import Active
from fhir_server.subscriptions.notification import Pending
from fhir_server.subscriptions.notify import DeliveryFailed

NAME = "subscription deliver"
# A websocket ping expects no answer: a producer's span; rest-hook and email: a client's.
KINDS = {"websocket": SpanKind.PRODUCER}


def delivery_span(active: Active, batch: Sequence[Pending]) -> AbstractContextManager[Any]:
    """The span of one attempt to deliver ``batch`` to ``active`` (a no-op when off)."""
    channel = active.hook.type_
    return tracing.delivery_span(NAME, batch, kind=KINDS.get(channel, SpanKind.CLIENT),
                                 **{"fhir.subscription": f"Subscription/{active.id_}",
                                    "fhir.subscription.channel": channel})


async def traced(active: Active, batch: Sequence[Pending],
                 send: Callable[[], Awaitable[None]]) -> None:
    """``send()`` (one attempt) inside its span, which notes whether it was delivered."""
    with delivery_span(active, batch) as span:
        try:
            await send()
        except DeliveryFailed:
            tracing.set_outcome(span, "failed", error=True)
            raise
        tracing.set_outcome(span, "delivered", error=False)
