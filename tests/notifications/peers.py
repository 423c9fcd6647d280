"""The notifications tests' peers on loopback: a real SMTP server (aiosmtpd) and an SMS
provider shaped like Twilio's messages API (an HTTP server in a thread recording the POSTs)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller

SMS_USER, SMS_TOKEN, SMS_FROM = "AC-test-account", "sms-t0ken", "+15550001111"
CLINIC_TZ = "America/Chicago"
HOLD_SECONDS = 30.0  # the longest a held POST waits for the test


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


def smtp_server(box: Inbox, port: int) -> Controller:
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


@dataclass
class SmsPost:
    form: dict[str, str]
    authorization: str | None


@dataclass
class SmsProvider:
    port: int = 0
    posts: list[SmsPost] = field(default_factory=list)
    status: int = 201  # what it answers: 201 accepted, 400 refused (an invalid number)
    server: ThreadingHTTPServer | None = None
    # Set: the first POST is recorded, then held unanswered (``holding`` tells the test)
    # until ``hold`` is set: a message the provider took and its sender has no answer for.
    hold: threading.Event | None = None
    holding: threading.Event = field(default_factory=threading.Event)

    def start(self) -> SmsProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                provider.posts.append(SmsPost(form=form,
                                              authorization=self.headers.get("Authorization")))
                if provider.hold is not None and not provider.holding.is_set():
                    provider.holding.set()
                    provider.hold.wait(HOLD_SECONDS)
                body = b'{"sid": "SM0001", "status": "queued"}'
                with contextlib.suppress(OSError):  # a sender killed meanwhile
                    self.send_response(provider.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/2010-04-01/Accounts/{SMS_USER}/Messages.json"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def arrived(items: list[Any], count: int, *, within: float = 15.0) -> list[Any]:
    deadline = time.monotonic() + within
    while len(items) < count:
        assert time.monotonic() < deadline, f"{len(items)} arrived, not {count}"
        await asyncio.sleep(0.02)
    return items


async def settle(seconds: float = 0.5) -> None:
    """Leave the consumer time to send what it should not (then nothing more came)."""
    await asyncio.sleep(seconds)


def peer_settings(smtp_port: int, sms: SmsProvider, **extra: object) -> dict[str, object]:
    """Settings of an app sending through these peers, the clinic in Chicago, quick polls
    and retries."""
    return {"fhir_smtp_url": f"smtp://127.0.0.1:{smtp_port}",
            "fhir_smtp_from": "clinic@example.org", "fhir_clinic_timezone": CLINIC_TZ,
            "fhir_sms_url": sms.url, "fhir_sms_user": SMS_USER, "fhir_sms_token": SMS_TOKEN,
            "fhir_sms_from": SMS_FROM, "fhir_events_poll_seconds": 0.01,
            "fhir_notify_backoff": 0.05, "fhir_notify_attempts": 3,
            "fhir_peer_allowed_hosts": "127.0.0.1", "fhir_payer_retries": 0,
            "fhir_payer_connect_timeout": 1.0, "fhir_payer_read_timeout": 2.0,
            "fhir_subscription_timeout": 2.0, **extra}  # the last: SMTP exchanges
