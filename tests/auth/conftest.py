"""Fixtures the patient-token tests share: two patients and a doctor, and patient a's app."""

from __future__ import annotations

import httpx
import pytest

from tests.auth.world import created
from tests.support.store import ClientFor


@pytest.fixture
async def people(client: httpx.AsyncClient) -> dict[str, str]:
    """Ids of patients ``a`` and ``b`` and of a ``doctor`` (a Practitioner)."""
    out = {key: await created(client, {"resourceType": "Patient", "name": [{"family": key}]})
           for key in ("a", "b")}
    out["doctor"] = await created(client, {"resourceType": "Practitioner",
                                           "name": [{"family": "Welby"}]})
    return out


@pytest.fixture
async def pa(client_for: ClientFor, people: dict[str, str]) -> httpx.AsyncClient:
    """Patient a's app: ``patient/*.cruds``."""
    return await client_for("patient/*.cruds", patient=people["a"])
