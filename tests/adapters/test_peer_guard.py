"""The peer guard (fhir_server/core/peer_guard.py): which addresses the payer and EHR client may
connect to, checked at the socket, against real listeners on loopback."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.adapters.payer import PayerEndpoint
from fhir_server.adapters.payer_fhir import FhirPayerAdapter
from fhir_server.adapters.payer_oauth import generate_client_key
from fhir_server.adapters.peer_errors import unreachable_text
from fhir_server.core.config import Settings
from fhir_server.core.errors import Upstream
from fhir_server.core.peer_guard import PeerAddressRefused, PeerGuard, parse_allowed, why_refused
from tests.adapters.listeners import Listener, http_answer

ELIGIBLE = {"resourceType": "CoverageEligibilityResponse", "status": "active"}
# Addresses no Endpoint may reach unless allowed, and what each is.
REFUSED = [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.5.4", "192.168.0.10", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.251", "240.0.0.1", "255.255.255.255", "::1", "::",
    "fe80::1", "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:80ff:fffe", "64:ff9b::a9fe:a9fe",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808"]


def payer(allowed: str, **overrides: Any) -> FhirPayerAdapter:
    return FhirPayerAdapter(Settings(fhir_peer_allowed_hosts=allowed, fhir_payer_retries=0,
                                     fhir_payer_connect_timeout=2.0,
                                     fhir_payer_read_timeout=5.0, **overrides))


def endpoint(address: str, **more: Any) -> PayerEndpoint:
    return PayerEndpoint(reference="Endpoint/peer", address=address, **more)


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    made = await Listener(http_answer(200, ELIGIBLE)).start()
    yield made
    await made.stop()


@pytest.mark.parametrize("address", REFUSED)
def test_addresses_not_globally_routable_are_refused(address: str) -> None:
    assert why_refused(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert why_refused(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", REFUSED)
async def test_refused_before_any_connection(address: str) -> None:
    """Resolution alone decides: nothing is connected to (the port is the discard port)."""
    with pytest.raises(PeerAddressRefused) as raised:
        await PeerGuard.from_setting("").addresses(address, 9, timeout=5)
    assert str(ipaddress.ip_address(address)) in str(raised.value)


async def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(PeerAddressRefused) as raised:
        await PeerGuard.from_setting("").addresses("localhost", 80, timeout=5)
    assert "loopback" in str(raised.value)


@pytest.mark.parametrize("setting", ["localhost", "LOCALHOST.", "127.0.0.1", "127.0.0.0/8",
                                     "localhost:80", "127.0.0.1:80", "[::1]:80,127.0.0.1:80"])
async def test_allowed_hosts_let_loopback_through(setting: str) -> None:
    found = await PeerGuard.from_setting(setting).addresses("localhost", 80, timeout=5)
    assert "127.0.0.1" in found


@pytest.mark.parametrize("setting", ["localhost:81", "127.0.0.1:81", "10.0.0.0/8",
                                     "example.org", "::1"])
async def test_entries_for_another_host_or_port_do_not(setting: str) -> None:
    guard = PeerGuard.from_setting(setting)
    with pytest.raises(PeerAddressRefused):
        await guard.addresses("127.0.0.1", 80, timeout=5)


@pytest.mark.parametrize("setting", ["*", "http://payer", "host:port", "10.0.0.1:0",
                                     "[::1]x", "pay er.org", "a..b"])
def test_unreadable_setting_is_refused_at_start(setting: str) -> None:
    with pytest.raises(ValueError, match="FHIR_PEER_ALLOWED_HOSTS"):
        parse_allowed(setting)


async def test_loopback_listener_receives_nothing_unless_allowed(listener: Listener) -> None:
    refused = payer("")
    try:
        with pytest.raises(Upstream) as raised:
            await refused.check_eligibility(endpoint(listener.url), {"resourceType": "X"})
    finally:
        await refused.close()
    assert raised.value.status == 502
    assert raised.value.diagnostics == unreachable_text("payer", "Endpoint/peer")
    assert listener.connections == 0
    # The same call, the listener allowed: it is reached and answers.
    allowed = payer(f"127.0.0.1:{listener.port}")
    try:
        answer = await allowed.check_eligibility(endpoint(listener.url), {"resourceType": "X"})
    finally:
        await allowed.close()
    assert answer.resource == ELIGIBLE
    assert listener.connections == 1


async def test_by_name_refused_then_allowed(listener: Listener) -> None:
    address = f"http://localhost:{listener.port}/fhir"
    for allowed, reached in (("", 0), ("localhost", 1)):
        adapter = payer(allowed)
        try:
            if reached:
                assert (await adapter.check_eligibility(endpoint(address), {})).resource \
                    == ELIGIBLE
            else:
                with pytest.raises(Upstream):
                    await adapter.check_eligibility(endpoint(address), {})
        finally:
            await adapter.close()
        assert listener.connections == reached


async def test_redirect_to_a_forbidden_address_is_not_followed() -> None:
    target = await Listener(http_answer(200, ELIGIBLE)).start()
    peer = await Listener(http_answer(307, Location=f"{target.url}/CoverageEligibilityRequest"
                                                    "/$submit")).start()
    adapter = payer(f"127.0.0.1:{peer.port}")
    try:
        with pytest.raises(Upstream) as raised:
            await adapter.check_eligibility(endpoint(peer.url), {})
    finally:
        await adapter.close()
        await peer.stop()
        await target.stop()
    assert raised.value.diagnostics == unreachable_text("payer", "Endpoint/peer")
    assert (peer.connections, target.connections) == (1, 0)


async def test_token_url_a_payer_publishes_is_guarded_too(tmp_path: Path) -> None:
    """The token endpoint comes from the payer's smart-configuration: a payer that names a
    forbidden one gets no client assertion sent there, and no claim sent at all."""
    token = await Listener(http_answer(200, {"access_token": "t", "expires_in": 300})).start()
    discovery = await Listener(http_answer(200, {
        "token_endpoint": f"http://127.0.0.1:{token.port}/auth/token"})).start()
    key_file = tmp_path / "client.jwk"
    key_file.write_text(json.dumps(generate_client_key()))
    adapter = payer(f"127.0.0.1:{discovery.port}", fhir_client_key_file=key_file)
    try:
        with pytest.raises(Upstream) as raised:
            await adapter.submit_claim(endpoint(discovery.url, oauth_client_id="clinic"), {})
    finally:
        await adapter.close()
        await discovery.stop()
        await token.stop()
    assert raised.value.diagnostics == unreachable_text("payer", "Endpoint/peer")
    assert token.connections == 0
    assert [r.split(b" ")[1] for r in discovery.requests] == [
        b"/fhir/.well-known/smart-configuration"]
