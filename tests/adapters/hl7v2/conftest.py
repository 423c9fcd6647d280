"""The app with its MLLP listener on a free loopback port."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from tests.support.server_process import free_port


@pytest.fixture
def hl7_port() -> int:
    return free_port()


@pytest.fixture
def settings_overrides(hl7_port: int) -> dict[str, object]:
    return {"fhir_hl7v2_port": hl7_port, "fhir_billing_provider": "Organization/clinic"}


@pytest.fixture
def port(app: FastAPI, hl7_port: int) -> int:
    """The listener's port, once the app (and so the listener) has started."""
    assert app.state.hl7v2 is not None
    return hl7_port
