"""The notifications tests' peers: an SMTP server and an SMS provider on loopback
(``peers.py``), and the app's settings to send through them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.events.runner import CURSORS
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


@pytest.fixture
async def client(client: httpx.AsyncClient, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's client once the notifications consumer has its cursor: it starts at the
    next event committed, so a write before that is (rightly) not told to the patient."""
    deadline = time.monotonic() + 15
    while await app.state.repo.records.get(kind=CURSORS, id_="notifications") is None:
        assert time.monotonic() < deadline, "the notifications consumer did not start"
        await asyncio.sleep(0.01)
    yield client
