"""Email Subscriptions: ``channel.type = email``, ``channel.endpoint = mailto:<address>``.

An email is not a safe place for health data (it is stored and forwarded beyond the
server's control), so a notification names only the Subscription, its topic or criteria,
the event numbers and the resources' ids and versions, and tells the reader to fetch them
from the server with their own credentials (or ``$events``). One email per notification:
one event for a classic Subscription, up to ``max-count`` for a topic-based one. Emails go
through ``FHIR_SMTP_URL`` (``adapters/smtp.py``); without it email channels are refused
when a Subscription is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

from fhir_server.adapters.smtp import SmtpServer
from fhir_server.core.config import Settings
from fhir_server.core.errors import Unprocessable
from fhir_server.subscriptions.notification import Pending

WHERE = ["Subscription.channel.endpoint"]
# One plain address: no display name, no second recipient, no header (CR/LF) injection.
ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def check_mailto(endpoint: Any, settings: Settings) -> str:
    """The address of ``mailto:<address>`` (Unprocessable when it is not one address, or
    when this server sends no email)."""
    if settings.fhir_smtp_url is None:
        raise Unprocessable("This server sends no email (FHIR_SMTP_URL is not set)",
                            expression=["Subscription.channel.type"])
    try:
        SmtpServer.parse(settings.fhir_smtp_url.get_secret_value())
    except ValueError as wrong:
        raise Unprocessable(f"This server cannot send email: {wrong}",
                            expression=["Subscription.channel.type"]) from None
    text = endpoint if isinstance(endpoint, str) else ""
    parts = urlsplit(text)
    address = unquote(parts.path)
    if parts.scheme != "mailto" or parts.query or len(address) > 254 or not ADDRESS.match(
            address):
        raise Unprocessable("An email channel's endpoint is mailto:<one address>",
                            expression=WHERE)
    return address


def sender(settings: Settings) -> str:
    return settings.fhir_smtp_from or f"fhir-server@{urlsplit(settings.base_url).hostname}"


def message(settings: Settings, *, id_: str, to: str, watching: str,
            items: Sequence[Pending], numbers: Sequence[int]) -> EmailMessage:
    """The email of a notification of ``items`` (identifiers only); ``numbers``: their
    event numbers (a topic-based Subscription's own, a classic one's the outbox's)."""
    base = settings.base_url
    mail = EmailMessage()
    mail["From"] = sender(settings)
    mail["To"] = to
    count = f"{len(items)} event{'s' if len(items) != 1 else ''}"
    mail["Subject"] = f"FHIR Subscription {id_}: {count}"
    mail["Message-ID"] = make_msgid(domain=urlsplit(base).hostname or None)
    mail["X-FHIR-Subscription"] = id_
    mail["X-FHIR-Event-Number"] = str(numbers[-1])
    lines = [f"Subscription/{id_} ({watching}) matched {count}:", ""]
    lines += [f"  event {number}: {item.type_}/{item.id_} version {item.version}, at "
              f"{item.at.isoformat()}" for item, number in zip(items, numbers, strict=True)]
    lines += ["", "This email carries no health data. Read each version with your own "
              "credentials:",
              *(f"  GET {base}/{item.type_}/{item.id_}/_history/{item.version}"
                for item in items),
              f"or every event of the Subscription: GET {base}/Subscription/{id_}/$events",
              ""]
    mail.set_content("\n".join(lines))
    return mail
