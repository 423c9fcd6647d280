"""The channels a patient notification goes out on: email over SMTP and SMS over HTTP.

* ``email``: through ``FHIR_SMTP_URL`` (``adapters/smtp.py``), From ``FHIR_SMTP_FROM``,
  with the timeout of email Subscriptions' sends (``FHIR_SUBSCRIPTION_TIMEOUT``);
* ``sms``: a Twilio-shaped API, a POST of the form fields ``To``, ``From`` and ``Body`` to
  ``FHIR_SMS_URL`` with basic auth (``FHIR_SMS_USER``, ``FHIR_SMS_TOKEN``), From
  ``FHIR_SMS_FROM``, through the shared peer HTTP client (``adapters/peer_http.py``:
  timeouts, a retry while nothing reached the provider, the circuit breaker, the guard).

A channel whose settings are unset is off. A failure is a ``ChannelFailed`` whose reason
names the kind of fault only (no address, no credential, no text), and says whether it may
pass by itself (``transient``: the server away, a timeout, a 5xx) or not (a refusal).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import urlencode, urlsplit

import httpx

from fhir_server.adapters.payer import PayerEndpoint
from fhir_server.adapters.peer_errors import Refused, unreachable
from fhir_server.adapters.peer_http import PeerHttp
from fhir_server.adapters.smtp import MailFailed, SmtpMailer, SmtpServer
from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError, UpstreamTimeout
from fhir_server.subscriptions.email_notice import ADDRESS

log = logging.getLogger("fhir_server.notifications")
SMS_PEER = "sms"  # the peer kind in metrics, spans and the log
SMS_REFERENCE = "FHIR_SMS_URL"
PHONE_CHARS = set("+0123456789 -()./")


class ChannelFailed(Exception):
    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.reason, self.transient = reason, transient


@dataclass(frozen=True)
class Outgoing:
    to: str
    subject: str
    text: str
    key: str  # the notification's key, sent as a header where the channel has them


class Channel(Protocol):
    name: str

    def valid(self, address: str) -> bool: ...

    async def send(self, message: Outgoing) -> None: ...

    async def close(self) -> None: ...


class EmailChannel:
    name = "email"

    def __init__(self, settings: Settings) -> None:
        assert settings.fhir_smtp_url is not None
        server = SmtpServer.parse(settings.fhir_smtp_url.get_secret_value())
        self.mailer = SmtpMailer(server, timeout=settings.fhir_subscription_timeout)
        self.sender = (settings.fhir_smtp_from
                       or f"fhir-server@{urlsplit(settings.base_url).hostname}")

    def valid(self, address: str) -> bool:
        return len(address) <= 254 and ADDRESS.match(address) is not None

    async def send(self, message: Outgoing) -> None:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = self.sender, message.to, message.subject
        mail["X-FHIR-Notification"] = message.key
        mail.set_content(message.text)
        try:
            await self.mailer.send(mail)
        except MailFailed as failed:
            permanent = failed.code is not None and failed.code >= 500
            raise ChannelFailed(str(failed), transient=not permanent) from None

    async def close(self) -> None:
        return None


class SmsChannel:
    name = "sms"

    def __init__(self, settings: Settings) -> None:
        assert settings.fhir_sms_url is not None
        self.url, self.sender = settings.fhir_sms_url, settings.fhir_sms_from
        self.http = PeerHttp(settings, peer=SMS_PEER)
        self.endpoint = PayerEndpoint(reference=SMS_REFERENCE, address=self.url)
        token = settings.fhir_sms_token.get_secret_value() if settings.fhir_sms_token else ""
        credentials = f"{settings.fhir_sms_user or ''}:{token}".encode()
        self._auth = ("Basic " + base64.b64encode(credentials).decode()
                      if settings.fhir_sms_user or token else None)

    def valid(self, address: str) -> bool:
        digits = sum(c.isdigit() for c in address)
        return 6 <= digits <= 15 and set(address) <= PHONE_CHARS

    async def send(self, message: Outgoing) -> None:
        to = "".join(c for c in message.to if c.isdigit() or c == "+")
        body = urlencode({"To": to, "From": self.sender, "Body": message.text}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json", "Idempotency-Key": message.key}
        if self._auth:
            headers["Authorization"] = self._auth

        def accepted(response: httpx.Response) -> None:
            if not 200 <= response.status_code < 300:
                raise unreachable(SMS_PEER, SMS_REFERENCE,
                                  f"answered HTTP {response.status_code}", kind=Refused)

        try:
            # Not idempotent: a message that may have reached the provider is not re-sent
            # here (the consumer's attempts decide).
            await self.http.call(self.endpoint, "POST", self.url, body=body, headers=headers,
                                 idempotent=False, read=accepted, max_bytes=64 * 1024)
        except Refused:
            raise ChannelFailed("the SMS provider refused the message", transient=False) \
                from None
        except UpstreamTimeout:
            raise ChannelFailed("the SMS provider did not answer in time",
                                transient=True) from None
        except FhirError:
            raise ChannelFailed("the SMS provider could not be reached or failed",
                                transient=True) from None

    async def close(self) -> None:
        await self.http.close()


def channels(settings: Settings) -> list[Channel]:
    """The channels whose settings are set, email first. An FHIR_SMTP_URL that is not one
    leaves email off (logged), as it leaves email Subscriptions refused: the server starts."""
    out: list[Channel] = []
    if settings.patient_email_configured:
        try:
            out.append(EmailChannel(settings))
        except ValueError as wrong:  # names no secret
            log.warning("patient email off: %s", wrong)
    if settings.patient_sms_configured:
        out.append(SmsChannel(settings))
    return out
