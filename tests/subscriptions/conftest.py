"""The Subscriptions tests' settings: receivers on loopback are allowed, retries are quick."""

from __future__ import annotations

import pytest

from tests.subscriptions.helpers import FAST


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(FAST)
