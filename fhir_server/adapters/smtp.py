"""Sending email through the SMTP server of ``FHIR_SMTP_URL`` (aiosmtplib).

``smtp://user:password@host:port`` (plain; ``?starttls=true`` upgrades to TLS before
logging in), or ``smtps://`` for implicit TLS; user and password are URL-encoded and
optional. The URL is a secret: it is read once, kept in a ``SecretStr`` setting, and
neither it nor the password is ever logged or put in an error; a failure is told by its
kind. Each message is one connection (Subscriptions' emails are few), bounded by a timeout;
retries are the caller's (the Subscription worker's backoff).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


class MailFailed(Exception):
    """A message that was not accepted; the reason names no credential. ``code``: the SMTP
    server's reply code when it answered (a 5xx refusal will not pass by itself)."""

    def __init__(self, reason: str, *, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        """The server of an ``smtp://`` or ``smtps://`` URL (ValueError naming no secret)."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("FHIR_SMTP_URL must be smtp://[user:password@]host[:port] or "
                             "smtps://...")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ValueError("FHIR_SMTP_URL has an invalid port") from None
        starttls = parse_qs(parts.query).get("starttls", ["false"])[0].lower() == "true"
        return cls(host=parts.hostname, port=port, implicit_tls=parts.scheme == "smtps",
                   starttls=starttls and parts.scheme == "smtp",
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None)


class SmtpMailer:
    def __init__(self, server: SmtpServer, *, timeout: float) -> None:
        self.server, self.timeout = server, timeout

    async def send(self, message: EmailMessage) -> None:
        server = self.server
        try:
            await aiosmtplib.send(
                message, hostname=server.host, port=server.port, use_tls=server.implicit_tls,
                start_tls=server.starttls, username=server.username, password=server.password,
                timeout=self.timeout)
        except aiosmtplib.SMTPResponseException as refused:  # the server's code, no text
            raise MailFailed(f"the SMTP server answered {refused.code}",
                             code=refused.code) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise MailFailed(f"the SMTP server could not be reached "
                             f"({type(error).__name__})") from None
