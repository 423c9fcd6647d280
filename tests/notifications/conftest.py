"""The notifications tests' settings: an SMTP server and an SMS provider on loopback, the
clinic in Chicago, quick polls and retries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.notifications.peers import SMS_FROM, SMS_TOKEN, SMS_USER, Inbox, SmsProvider, smtp_server
from tests.support.server_process import free_port

CLINIC_TZ = "America/Chicago"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def inbox(smtp_port: int) -> Iterator[Inbox]:
    box = Inbox()
    controller = smtp_server(box, smtp_port)
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def sms() -> Iterator[SmsProvider]:
    provider = SmsProvider().start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def settings_overrides(smtp_port: int, sms: SmsProvider) -> dict[str, object]:
    return {"fhir_smtp_url": f"smtp://127.0.0.1:{smtp_port}",
            "fhir_smtp_from": "clinic@example.org", "fhir_clinic_timezone": CLINIC_TZ,
            "fhir_sms_url": sms.url, "fhir_sms_user": SMS_USER, "fhir_sms_token": SMS_TOKEN,
            "fhir_sms_from": SMS_FROM, "fhir_events_poll_seconds": 0.01,
            "fhir_notify_backoff": 0.05, "fhir_notify_attempts": 3,
            "fhir_peer_allowed_hosts": "127.0.0.1", "fhir_payer_retries": 0,
            "fhir_payer_connect_timeout": 1.0, "fhir_payer_read_timeout": 2.0}
