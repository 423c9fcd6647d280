"""The notifications tests' peers: an SMTP server and an SMS provider on loopback
(``peers.py``), and the app's settings to send through them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.notifications.peers import Inbox, SmsProvider, peer_settings, smtp_server
from tests.support.server_process import free_port


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
def sms_status() -> int:
    return 201


@pytest.fixture
def sms(sms_status: int) -> Iterator[SmsProvider]:
    provider = SmsProvider(status=sms_status).start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def settings_overrides(smtp_port: int, sms: SmsProvider) -> dict[str, object]:
    return peer_settings(smtp_port, sms)
