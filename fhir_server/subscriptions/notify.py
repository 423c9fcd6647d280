"""Sending one rest-hook notification, signed, through the guarded HTTP client (and an
email Subscription's, through ``FHIR_SMTP_URL``: ``mail``).

The body (empty for a ping, else the resource's stored JSON in the version of the event)
is signed with HMAC-SHA256 under the Subscription's secret; the hex digest goes in
``X-Signature`` (as Medplum signs its rest-hooks), and the event number in
``X-FHIR-Event-Number`` (a classic notification's: the outbox's; a topic-based one's: its
last event's number in the Subscription, ``numbering.py``; none on a handshake or
heartbeat), so a receiver recognises a notification it got before (delivery
is at least once). With tracing on, ``traceparent`` is the delivery span's (``traced.py``),
so a receiver can continue the trace of the commit. Requests go through
``adapters/hook_client.py``: only where the peer guard allows
(``FHIR_SUBSCRIPTION_ALLOWED_HOSTS``), resolved once, redirects not followed. Header values
and bodies are never logged: a failure is told by its kind (a status code, a timeout, a
refused address).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from email.message import EmailMessage

import aiohttp

from fhir_server.adapters.hook_client import HookClient
from fhir_server.adapters.smtp import Mailer, MailFailed, SmtpMailer, SmtpServer
from fhir_server.core.config import Settings
from fhir_server.core.peer_guard import PeerAddressRefused
from fhir_server.observability import tracing
from fhir_server.subscriptions.channel import Channel, guard

SIGNATURE = "X-Signature"
EVENT_NUMBER = "X-FHIR-Event-Number"


class DeliveryFailed(Exception):
    """A notification that did not arrive; ``reason`` says why, without content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    def __init__(self, settings: Settings) -> None:
        self.timeout = settings.fhir_subscription_timeout
        self.client = HookClient(guard(settings.fhir_subscription_allowed_hosts),
                                 timeout=self.timeout)
        self.smtp_url = settings.fhir_smtp_url
        self._mailer: Mailer | None = None

    async def close(self) -> None:
        await self.client.close()

    async def mail(self, message: EmailMessage) -> None:
        """Send an email Subscription's notification through ``FHIR_SMTP_URL``."""
        if self._mailer is None:
            if self.smtp_url is None:
                raise DeliveryFailed("this server sends no email (FHIR_SMTP_URL is not set)")
            try:
                server = SmtpServer.parse(self.smtp_url.get_secret_value())
            except ValueError as wrong:
                raise DeliveryFailed(str(wrong)) from None
            self._mailer = SmtpMailer(server, timeout=self.timeout)
        try:
            await self._mailer.send(message)
        except MailFailed as failure:
            raise DeliveryFailed(str(failure)) from None

    async def send(self, hook: Channel, *, secret: str, number: int, type_: str, id_: str,
                   body: bytes | None) -> None:
        """POST a ping (``body`` None) to the endpoint, or PUT the resource to
        ``[endpoint]/[type]/[id]`` (R4's rest-hook with a payload)."""
        if body is None:
            await self._request(hook, "POST", hook.endpoint, secret=secret, number=number,
                                body=None)
        else:
            await self._request(hook, "PUT", f"{hook.endpoint.rstrip('/')}/{type_}/{id_}",
                                secret=secret, number=number, body=body)

    async def post(self, hook: Channel, *, secret: str, body: bytes, number: int | None,
                   timeout: float | None = None) -> None:
        """POST a topic-based notification Bundle to the endpoint (``number``: the last
        event it carries; None for a handshake or a heartbeat)."""
        await self._request(hook, "POST", hook.endpoint, secret=secret, number=number,
                            body=body, timeout=timeout)

    async def _request(self, hook: Channel, method: str, url: str, *, secret: str,
                       number: int | None, body: bytes | None,
                       timeout: float | None = None) -> None:
        content = body or b""
        headers = {**dict(hook.headers), SIGNATURE: sign(secret, content)}
        if number is not None:
            headers[EVENT_NUMBER] = str(number)
        if body is not None:
            headers["Content-Type"] = "application/fhir+json"
        headers = tracing.with_traceparent(headers)  # the delivery span's (traced.py)
        limit = timeout or self.timeout
        try:
            async with asyncio.timeout(limit):
                status = await self.client.request(method, url, headers=headers,
                                                   body=content, timeout=limit)
        except PeerAddressRefused as refused:
            raise DeliveryFailed(f"the endpoint's address is refused: {refused}") from None
        except TimeoutError:
            raise DeliveryFailed(f"no answer within {limit:g} s") from None
        except (aiohttp.ClientError, OSError) as error:
            raise DeliveryFailed(f"the endpoint could not be reached "
                                 f"({type(error).__name__})") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"the endpoint answered HTTP {status}")
