"""Email Subscriptions, sent through a real SMTP server (aiosmtpd) on a loopback port: the
message names the Subscription, its criteria or topic, event numbers and resource ids, and
no health data."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.subscriptions.helpers import (
    FAST,
    observation,
    status_becomes,
    subscription,
    topic_subscription,
    topic_url,
)
from tests.support.server_process import free_port

USER, PASSWORD = "notifier", "s3cret:with/odd@chars"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> AuthResult:
        good = isinstance(data, LoginPassword) and (
            data.login.decode(), data.password.decode()) == (USER, PASSWORD)
        if good:
            self.logins.append(data.login.decode())
        return AuthResult(success=good)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def settings_overrides(inbox: tuple[Inbox, int]) -> dict[str, object]:
    quoted = PASSWORD.replace(":", "%3A").replace("/", "%2F").replace("@", "%40")
    return {**FAST, "fhir_smtp_url": f"smtp://{USER}:{quoted}@127.0.0.1:{inbox[1]}",
            "fhir_smtp_from": "clinic-notices@example.org"}


async def received(box: Inbox, count: int) -> list[EmailMessage]:
    deadline = time.monotonic() + 10
    while len(box.messages) < count:
        assert time.monotonic() < deadline, f"{len(box.messages)} emails, not {count}"
        await asyncio.sleep(0.02)
    return box.messages


async def test_an_email_names_the_event_and_carries_no_health_data(
        client: httpx.AsyncClient, inbox: tuple[Inbox, int]) -> None:
    box, _ = inbox
    created = (await client.post("Subscription", json={
        **subscription("Observation?status=final", "mailto:billing@clinic.example.org"),
        "channel": {"type": "email", "endpoint": "mailto:billing@clinic.example.org"}})).json()
    await status_becomes(client, created["id"], "active")
    written = (await client.post("Observation", json={
        **observation("final"), "note": [{"text": "Peter Chalmers, very private"}]})).json()
    [mail] = await received(box, 1)
    text = mail.get_content()
    assert mail["To"] == "billing@clinic.example.org"
    assert mail["From"] == "clinic-notices@example.org"
    assert mail["X-FHIR-Subscription"] == created["id"]
    assert created["id"] in mail["Subject"] and "1 event" in mail["Subject"]
    assert f"Observation/{written['id']} version 1" in text
    assert f"/Observation/{written['id']}/_history/1" in text
    assert "Observation?status=final" in text and "credentials" in text
    assert "Chalmers" not in mail.as_string() and "heart rate" not in mail.as_string()
    assert box.logins == [USER]


async def test_a_topic_sends_its_events_in_one_email(client: httpx.AsyncClient,
                                                     inbox: tuple[Inbox, int]) -> None:
    box, _ = inbox
    canonical = await topic_url(client, "Patient")
    body = topic_subscription(canonical, "mailto:front-desk@clinic.example.org", max_count=5)
    body["channel"] = {**body["channel"], "type": "email"}
    created = (await client.post("Subscription", json=body)).json()
    await status_becomes(client, created["id"], "active")  # no handshake by email
    patient = (await client.post("Patient", json={"resourceType": "Patient"})).json()
    [mail] = await received(box, 1)
    assert canonical in mail.get_content()
    assert f"Patient/{patient['id']} version 1" in mail.get_content()


async def test_an_email_channel_needs_one_address(client: httpx.AsyncClient) -> None:
    for endpoint in ("mailto:a@example.org,b@example.org", "mailto:a@example.org?cc=b@x.org",
                     "mailto:a@example.org%0D%0ABcc:b@example.org", "https://example.org",
                     "mailto:"):
        answer = await client.post("Subscription", json={
            **subscription("Observation?status=final", "x"),
            "channel": {"type": "email", "endpoint": endpoint}})
        assert answer.status_code == 422, (endpoint, answer.text)
        assert answer.json()["issue"][0]["expression"] == ["Subscription.channel.endpoint"]


@pytest.mark.parametrize("settings_overrides", [dict(FAST)])
async def test_without_an_smtp_server_email_is_refused(client: httpx.AsyncClient) -> None:
    answer = await client.post("Subscription", json={
        **subscription("Observation?status=final", "x"),
        "channel": {"type": "email", "endpoint": "mailto:a@example.org"}})
    assert answer.status_code == 422 and "FHIR_SMTP_URL" in answer.text
