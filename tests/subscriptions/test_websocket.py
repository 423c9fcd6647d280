"""R4 websocket Subscriptions against a real server with two workers: sockets bound in
whichever worker accepted them get a ping per matching event; binding needs a token that
may read the Subscription, and a binding ends when that token expires."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.subscriptions.helpers import observation
from tests.support.server_process import server_process
from tests.support.store import Store, mint_for_database

WEBSOCKET = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"
SOCKETS = 6
LIFETIME = 3  # seconds: the short-lived binding token
PATIENT_APP = "patient/Subscription.cruds patient/Observation.rs"


async def active(http: httpx.AsyncClient, id_: str) -> None:
    deadline = time.monotonic() + 20
    while (await http.get(f"Subscription/{id_}")).json()["status"] != "active":
        assert time.monotonic() < deadline, "the Subscription was not activated"
        await asyncio.sleep(0.05)


async def bound(url: str, id_: str, headers: dict[str, str]) -> ClientConnection:
    socket = await connect(url, additional_headers=headers)
    await socket.send(f"bind {id_}")
    assert await asyncio.wait_for(socket.recv(), 10) == f"bound {id_}"
    return socket


@pytest.mark.slow
@pytest.mark.process
async def test_sockets_in_either_worker_get_one_ping_per_matching_event(store: Store) -> None:
    with server_process(store, FHIR_WORKERS="2", FHIR_EVENTS_POLL_SECONDS="0.05") as server:
        token = await mint_for_database(store, server.base)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.base + "/", headers=headers,
                                     timeout=30) as http:
            statement = (await http.get("metadata")).json()
            url = next(e["valueUri"] for e in statement["rest"][0]["extension"]
                       if e["url"] == WEBSOCKET)
            assert url == server.base.replace("http://", "ws://") + "/websocket"
            created = (await http.post("Subscription", json={
                "resourceType": "Subscription", "status": "requested", "reason": "test",
                "criteria": "Observation?status=final",
                "channel": {"type": "websocket"}})).json()
            id_ = created["id"]
            await active(http, id_)
            # Several connections: the listening socket hands them to either worker.
            sockets = [await bound(url, id_, headers)
                       for _ in range(SOCKETS - 1)]
            # A browser cannot set headers: its token comes as the first message.
            browser = await connect(url)
            await browser.send(f"bearer {token}")
            await browser.send(f"bind {id_}")
            assert await asyncio.wait_for(browser.recv(), 10) == f"bound {id_}"
            sockets.append(browser)
            await http.post("Observation", json=observation("final"))
            await http.post("Observation", json=observation("preliminary"))
            await http.post("Observation", json=observation("final"))
            for socket in sockets:
                got = [await asyncio.wait_for(socket.recv(), 10) for _ in range(2)]
                assert got == [f"ping {id_}"] * 2
            await asyncio.sleep(0.5)
            for socket in sockets:  # the preliminary one pinged no one
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(socket.recv(), 0.05)
                await socket.close()


@pytest.mark.slow
@pytest.mark.process
async def test_binding_needs_a_token_that_may_read_the_subscription(store: Store) -> None:
    with server_process(store, FHIR_WORKERS="2") as server:
        token = await mint_for_database(store, server.base)
        patients_only = await mint_for_database(store, server.base, scope="system/Patient.rs")
        async with httpx.AsyncClient(base_url=server.base + "/", timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            id_ = (await http.post("Subscription", json={
                "resourceType": "Subscription", "status": "requested", "reason": "test",
                "criteria": "Observation?status=final",
                "channel": {"type": "websocket"}})).json()["id"]
            url = server.base.replace("http://", "ws://") + "/websocket"
            async with connect(url) as anonymous:
                await anonymous.send(f"bind {id_}")
                answer = await asyncio.wait_for(anonymous.recv(), 10)
                assert str(answer).startswith(f"error {id_} ") and "access token" in answer
            # A patient-facing app binds only the Subscriptions it made for its patient.
            another_app = await mint_for_database(store, server.base, scope="patient/*.rs",
                                                  patient="ann", client_id="portal")
            async with connect(url, additional_headers={
                    "Authorization": f"Bearer {another_app}"}) as patient_app:
                await patient_app.send(f"bind {id_}")
                answer = await asyncio.wait_for(patient_app.recv(), 10)
                assert str(answer) == f"error {id_} Subscription/{id_} is not known"
            async with connect(url, additional_headers={
                    "Authorization": f"Bearer {patients_only}"}) as narrow:
                await narrow.send(f"bind {id_}")
                answer = await asyncio.wait_for(narrow.recv(), 10)
                assert str(answer).startswith(f"error {id_} ") and "Subscription" in answer
                await narrow.send("bind not-there")
                assert str(await asyncio.wait_for(narrow.recv(), 10)).startswith(
                    "error not-there ")
            with pytest.raises(InvalidStatus) as refused:  # refused before the upgrade
                async with connect(url, additional_headers={
                        "Authorization": "Bearer forged"}) as forged:
                    await forged.recv()
            assert refused.value.response.status_code == 403


def _expiry(token: str) -> int:
    """The token's ``exp`` claim, read as any holder of the token can (no key needed)."""
    claims = token.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["exp"])


@pytest.mark.slow
@pytest.mark.process
async def test_a_binding_ends_when_its_token_expires_and_a_fresh_token_resumes_it(
        store: Store) -> None:
    with server_process(store, FHIR_EVENTS_POLL_SECONDS="0.05") as server:
        admin = await mint_for_database(store, server.base)
        async with httpx.AsyncClient(base_url=server.base + "/", timeout=30,
                                     headers={"Authorization": f"Bearer {admin}"}) as http:
            ann = (await http.post("Patient", json={"resourceType": "Patient"})).json()["id"]
            # A patient-facing app subscribes, and binds, with its own short-lived token.
            app = {"scope": PATIENT_APP, "patient": ann, "client_id": "portal"}
            short = await mint_for_database(store, server.base, lifetime=LIFETIME, **app)
            created = await http.post("Subscription", headers={
                "Authorization": f"Bearer {short}"}, json={
                "resourceType": "Subscription", "status": "requested", "reason": "test",
                "criteria": "Observation?status=final", "channel": {"type": "websocket"}})
            assert created.status_code == 201, created.text
            id_ = created.json()["id"]
            await active(http, id_)
            url = server.base.replace("http://", "ws://") + "/websocket"
            socket = await bound(url, id_, {"Authorization": f"Bearer {short}"})
            await http.post("Observation", json=observation("final"))  # not Ann's
            await http.post("Observation", json=observation("final", ann))
            assert await asyncio.wait_for(socket.recv(), 10) == f"ping {id_}"

            # The token expires: the socket is told, and stays open.
            said = str(await asyncio.wait_for(socket.recv(), LIFETIME + 10))
            assert time.time() >= _expiry(short)
            assert said.startswith(f"error {id_} ") and "expired" in said, said
            await http.post("Observation", json=observation("final", ann))
            with pytest.raises(TimeoutError):  # judged and not pinged: the binding ended
                await asyncio.wait_for(socket.recv(), 1)
            await socket.send(f"bind {id_}")  # the expired token binds nothing
            said = str(await asyncio.wait_for(socket.recv(), 10))
            assert said.startswith(f"error {id_} ") and "expired" in said, said

            # A fresh token on the same socket, and a bind again: pings resume.
            await socket.send(f"bearer {await mint_for_database(store, server.base, **app)}")
            await socket.send(f"bind {id_}")
            assert await asyncio.wait_for(socket.recv(), 10) == f"bound {id_}"
            await http.post("Observation", json=observation("final", ann))
            assert await asyncio.wait_for(socket.recv(), 10) == f"ping {id_}"
            await socket.close()
