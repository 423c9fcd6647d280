"""FHIR_X12_POLL_INTERVAL: the server polls the clearinghouses by itself."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.workflow.helpers import post
from tests.x12.world import bill as make_bill
from tests.x12.world import patient_with_coverage, setup_clinic


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic", "fhir_x12_poll_interval": 0.3}


@pytest.mark.process
async def test_the_server_applies_the_277ca_by_itself(client: httpx.AsyncClient,
                                                      clearinghouse: str) -> None:
    world = await setup_clinic(client, clearinghouse)
    async with httpx.AsyncClient() as http:
        await http.post(f"{clearinghouse}/admin/config", json={"reject_members": ["M404"]})
    member = await patient_with_coverage(client, world, member="M404")
    claim = (await make_bill(client, world, member["patient"]))["Claim"][0]
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200 and r.json()["outcome"] == "queued", r.text
    for _ in range(100):
        await asyncio.sleep(0.2)
        response = (await client.get(f"ClaimResponse/{r.json()['id']}")).json()
        if response["outcome"] != "queued":
            break
    assert response["outcome"] == "error"
    documents = (await client.get(f"DocumentReference?related=ClaimResponse/{response['id']}"
                                  "&type=https://fhir-rcm-server.org/CodeSystem/x12-transaction"
                                  "|277CA")).json()
    assert documents["total"] == 1
