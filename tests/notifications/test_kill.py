"""A server killed (SIGKILL) after the SMS provider took a message and before the server
recorded it: after a restart that message is sent again (at least once, as
docs/notifications.md says), once more only, and every other notice exactly once; each
notice ends with one Communication.

The provider holds its answer to the first message; the test kills the server while it
waits, so the kill falls exactly between "sent" and "recorded"."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest

from fhir_server.events.runner import CURSORS
from fhir_server.storage.open import open_repository
from tests.notifications.builders import appointment, patient, starts_in
from tests.notifications.peers import SMS_FROM, SMS_TOKEN, SMS_USER, SmsProvider, arrived
from tests.notifications.records import communications, created
from tests.support.server_process import server_process, stop_process
from tests.support.store import HTTP_TIMEOUT, Store, mint_for_database

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL")
VISITS = 3


def sms_env(provider: SmsProvider) -> dict[str, str]:
    return {"FHIR_SMS_URL": provider.url, "FHIR_SMS_USER": SMS_USER,
            "FHIR_SMS_TOKEN": SMS_TOKEN, "FHIR_SMS_FROM": SMS_FROM,
            "FHIR_PEER_ALLOWED_HOSTS": "127.0.0.1", "FHIR_PAYER_RETRIES": "0",
            "FHIR_NOTIFY_BACKOFF": "0.05"}


def mobile(n: int) -> str:
    return f"+1555010{n:04d}"


async def consumer_started(store: Store) -> None:
    """The notifications consumer starts at the next event committed: wait for its cursor,
    so the bookings below are its to tell."""
    repo = await open_repository(store.settings())
    try:
        deadline = time.monotonic() + HTTP_TIMEOUT
        while await repo.records.get(kind=CURSORS, id_="notifications") is None:
            assert time.monotonic() < deadline, "the notifications consumer did not start"
            await asyncio.sleep(0.05)
    finally:
        await repo.close()


@pytest.mark.slow
@pytest.mark.process
async def test_a_kill_between_send_and_record_sends_that_message_once_more(
        store: Store) -> None:
    hold = threading.Event()
    provider = SmsProvider(hold=hold).start()
    try:
        patients: list[dict[str, Any]] = []
        with server_process(store, **sms_env(provider)) as server:
            await consumer_started(store)
            token = await mint_for_database(store, server.base)
            async with httpx.AsyncClient(base_url=server.base + "/", timeout=HTTP_TIMEOUT,
                                         headers={"Authorization": f"Bearer {token}"}) as http:
                for n in range(VISITS):
                    telecom = [{"system": "phone", "use": "mobile", "value": mobile(n)}]
                    patients.append(await created(http, patient(telecom=telecom)))
                for n, booked in enumerate(patients):
                    await created(http, appointment(booked["id"],
                                                    starts_in(timedelta(days=3 + n))))
                assert await asyncio.to_thread(provider.holding.wait, HTTP_TIMEOUT)
                os.kill(server.proc.pid, signal.SIGKILL)
                stop_process(server.proc, signal.SIGKILL)
        hold.set()
        held = provider.posts[0].form["To"]
        assert len(provider.posts) == 1, "one message at a time: the others wait"

        with server_process(store, **sms_env(provider)) as server:
            token = await mint_for_database(store, server.base)
            async with httpx.AsyncClient(base_url=server.base + "/", timeout=HTTP_TIMEOUT,
                                         headers={"Authorization": f"Bearer {token}"}) as http:
                await arrived(provider.posts, VISITS + 1, within=HTTP_TIMEOUT)
                await asyncio.sleep(0.5)  # nothing more comes
                recorded = {p["id"]: await communications(http, p["id"]) for p in patients}
    finally:
        provider.stop()

    sent = Counter(post.form["To"] for post in provider.posts)
    expected = {mobile(n): 2 if mobile(n) == held else 1 for n in range(VISITS)}
    assert dict(sent) == expected, "the held message once more, every other exactly once"
    for booked in patients:
        [communication] = recorded[booked["id"]]
        assert communication["status"] == "completed"
        assert communication["recipient"] == [{"reference": f"Patient/{booked['id']}"}]
