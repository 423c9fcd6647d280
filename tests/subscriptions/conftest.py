"""The Subscriptions tests' settings: receivers on loopback are allowed, retries are quick."""

from __future__ import annotations

import pytest

FAST = {"fhir_subscription_allowed_hosts": "127.0.0.1", "fhir_subscription_backoff": 0.01,
        "fhir_subscription_max_attempts": 3, "fhir_subscription_timeout": 2.0,
        "fhir_events_poll_seconds": 0.01}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(FAST)
