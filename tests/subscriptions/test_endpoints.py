"""Where notifications may go: https to public addresses, else only allow-listed hosts."""

from __future__ import annotations

import httpx
import pytest

from tests.subscriptions.conftest import FAST
from tests.subscriptions.helpers import observation, status_becomes, subscribe, subscription
from tests.subscriptions.receiver import receiver


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {**FAST, "fhir_subscription_allowed_hosts": ""}  # nothing on loopback allowed


@pytest.mark.parametrize(("endpoint", "says"), [
    ("http://receiver.example.org/hook", "must use https"),  # public, not allow-listed
    ("https://127.0.0.1:8443/hook", "loopback"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),  # the cloud metadata service
    ("https://10.1.2.3/hook", "private"),
    ("https://user:pw@receiver.example.org/hook", "without credentials"),
    ("ftp://receiver.example.org/hook", "absolute https URL"),
])
async def test_endpoints_the_server_does_not_call_are_refused_when_written(
        client: httpx.AsyncClient, endpoint: str, says: str) -> None:
    answer = await client.post("Subscription", json=subscription("Observation?", endpoint))
    assert answer.status_code == 422, answer.text
    issue = answer.json()["issue"][0]
    assert issue["expression"] == ["Subscription.channel.endpoint"]
    assert says in issue["diagnostics"]


async def test_a_name_resolving_to_loopback_is_refused_when_connecting(
        client: httpx.AsyncClient) -> None:
    """A host name passes when written; the address it resolves to is checked at the
    socket (DNS rebinding included), so the notification never leaves and the
    Subscription goes to error saying why."""
    with receiver() as hook:
        port = hook.url.rsplit(":", 1)[1]
        id_, _ = await subscribe(client, "Observation?", f"https://localhost:{port}/hook")
        await client.post("Observation", json=observation("final"))
        failed = await status_becomes(client, id_, "error")
    assert hook.got == []
    assert "refused" in failed["error"] and "loopback" in failed["error"]


async def test_header_values_are_never_echoed_in_errors(client: httpx.AsyncClient) -> None:
    answer = await client.post("Subscription", json=subscription(
        "Observation?", "https://receiver.example.org/hook", headers=("no colon secret-123",)))
    assert answer.status_code == 422
    assert "secret-123" not in answer.text
