"""The RabbitMQ bridge: every change event published to a durable topic exchange.

A consumer of the outbox (``fhir_server/events/``) named ``amqp``, run in one process at a
time under its lease. Each event becomes one persistent message (``message_id`` = the
event's number, ``application/json``) published to ``FHIR_AMQP_EXCHANGE`` with the routing
key ``<Type>.<action>`` (``Appointment.update``) and, in its ``CC`` header, one key
``journey.<topic>`` per journey topic (``journey.appointment-booked``). CC is RabbitMQ's
sender-selected distribution: the broker routes the one message by all of its keys, so one
publisher confirm covers every route (an event is never half routed), and a queue bound by
several of them (``Appointment.*`` and ``journey.#``) holds one copy. The body is
``Event.body()`` (identifiers only); with ``FHIR_AMQP_PAYLOAD=full`` also the version's JSON
as ``resource`` (not for a deletion).

A batch is published in number order on one channel with publisher confirms, pipelined,
and ``deliver`` answers how many were confirmed from the first: the cursor moves past those
only. A nack, a timeout or a lost connection ends the attempt; the connection is dropped
and the next attempt (after the runner's backoff with jitter) connects again and publishes
again from the first event not confirmed. So delivery is at least once: a number may come
twice, always with the same message id.

The first time the bridge runs it starts at the next event committed ("now"), not at the
oldest the outbox keeps: a broker connected for the first time has no queue bound that
waits for last week's changes (what is past is read from the FHIR API), and from then on
the cursor keeps every event until the broker confirmed it, across outages and restarts.

With tracing on, each attempt runs in an ``amqp publish`` span (a producer's) that
continues the trace of the events' commit, or links to each event's commit when they come
from several (``observability/tracing.py``), and each message carries that span's
``traceparent`` header, so a consumer can continue it.

The URL may carry a password: the logs name the broker's host and port only (and the
span the exchange's name).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Literal

import aio_pika
import orjson
from aio_pika.abc import AbstractConnection, AbstractExchange, HeadersType
from opentelemetry.trace import SpanKind
from pydantic import SecretStr

from fhir_server.core.config import Settings, amqp_address
from fhir_server.events.consumer import Consumer
from fhir_server.events.event import Event
from fhir_server.observability import tracing
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.adapters.amqp")

CONNECT_TIMEOUT = 10.0  # seconds to connect, open the channel and declare the exchange
# Seconds a publish may wait for its confirm (a broker short of memory or disk blocks its
# publishers): then the attempt ends and is made again after a pause.
CONFIRM_TIMEOUT = 30.0
Payload = Literal["event", "full"]


def routing_keys(event: Event) -> tuple[str, list[str]]:
    """The event's routing key, and the journey keys its CC header carries."""
    return f"{event.type_}.{event.action}", [f"journey.{topic}" for topic in event.topics]


class AmqpBridge(Consumer):
    name = "amqp"
    batch = 500  # publishes pipelined at once, confirmed together
    start = "now"

    def __init__(self, *, url: SecretStr, exchange: str, payload: Payload,
                 repo: Repository) -> None:
        self.url = url
        self.exchange_name = exchange
        self.payload = payload
        self.repo = repo
        host, port = amqp_address(url.get_secret_value())
        self.broker = f"{host}:{port}"  # what the logs say of the URL
        self._connection: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None

    async def deliver(self, events: Sequence[Event]) -> int:
        """Publish ``events``; how many were confirmed, from the first. One span per attempt
        when tracing (``observability/tracing.py``), linked to each event's commit."""
        with tracing.delivery_span(
                "amqp publish", events, kind=SpanKind.PRODUCER,
                **{"messaging.system": "rabbitmq", "messaging.operation.type": "publish",
                   "messaging.destination.name": self.exchange_name}) as span:
            done = await self._publish(events)
            tracing.set_outcome(span, "confirmed" if done == len(events) else "not confirmed",
                                error=done < len(events))
            if span is not None:
                span.set_attribute("messaging.confirmed", done)
        return done

    async def _publish(self, events: Sequence[Event]) -> int:
        exchange = await self._open()
        messages = [(self._message(event, await self._body(event)), event) for event in events]
        # gather starts the publishes in this order and aiormq sends them under the channel's
        # lock in the order they start: they leave, and are confirmed, in number order.
        results = await asyncio.gather(
            *(exchange.publish(message, routing_key=routing_keys(event)[0], mandatory=False,
                               timeout=CONFIRM_TIMEOUT) for message, event in messages),
            return_exceptions=True)
        done = 0
        for result in results:
            if isinstance(result, BaseException):
                log.warning("amqp publish not confirmed broker=%s event=%d error=%s",
                            self.broker, events[done].number, type(result).__name__)
                await self._drop()
                break
            done += 1
        return done

    async def close(self) -> None:
        await self._drop()

    async def _open(self) -> AbstractExchange:
        """The exchange on a live connection: connected (again) when there is none."""
        if (self._exchange is not None and self._connection is not None
                and not self._connection.is_closed):
            return self._exchange
        await self._drop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                connection = await aio_pika.connect(
                    self.url.get_secret_value(),
                    client_properties={"connection_name": "fhir-server events"})
                try:
                    channel = await connection.channel(publisher_confirms=True)
                    exchange = await channel.declare_exchange(
                        self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
                except BaseException:
                    await connection.close()
                    raise
        except Exception as error:
            log.warning("amqp connect failed broker=%s error=%s", self.broker,
                        type(error).__name__)
            raise
        self._connection, self._exchange = connection, exchange
        log.info("amqp connected broker=%s exchange=%s", self.broker, self.exchange_name)
        return exchange

    async def _drop(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except Exception as error:  # already broken: nothing more to release
                log.debug("amqp close failed broker=%s error=%s", self.broker,
                          type(error).__name__)

    async def _body(self, event: Event) -> bytes:
        body: dict[str, Any] = event.body()
        if self.payload == "full" and event.action != "delete":
            stored = await self.repo.version(type_=event.type_, id_=event.id_,
                                             version=event.version)
            if stored is not None and stored.text is not None:
                # The version's JSON as stored and served, not parsed and written again.
                body["resource"] = orjson.Fragment(stored.text)
        return orjson.dumps(body)

    @staticmethod
    def _message(event: Event, body: bytes) -> aio_pika.Message:
        key, journeys = routing_keys(event)
        cc: list[Any] = list(journeys)  # pamqp's field array type
        headers: HeadersType = {"CC": cc} if cc else {}
        trace = tracing.current_traceparent()  # the publish span's, when tracing
        if trace is not None:
            headers["traceparent"] = trace
        return aio_pika.Message(
            body, content_type="application/json", message_id=str(event.number),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, type=key, timestamp=event.at,
            app_id="fhir-server", headers=headers)


def bridges(*, settings: Settings, repo: Repository) -> list[Consumer]:
    """The bridge when FHIR_AMQP_URL is set (``main.py`` hands it to the event runner)."""
    url = settings.fhir_amqp_url
    if url is None:
        return []
    return [AmqpBridge(url=url, exchange=settings.fhir_amqp_exchange,
                       payload=settings.fhir_amqp_payload, repo=repo)]
