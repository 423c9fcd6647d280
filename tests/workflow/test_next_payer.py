"""Coordination of benefits over FHIR: a patient with a primary (order 1) and a secondary
(order 2) Coverage. The bill's Claim goes to the primary payer, a server process on
loopback; its answer makes the next-payer worker bill what is left to the secondary (the
same payer process, for a second plan), with the primary's answer carried; the Invoice
shows what the patient owes after both. Expected amounts come from the price list and the
two plans' copays and deductibles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import (
    PRICES,
    bill_parameters,
    charge_item_definition,
    coverage,
    patient,
    payer_org,
    service,
)
from tests.support.server_process import ServerProcess, client_key_files, payer_process
from tests.support.store import HTTP_TIMEOUT, Store, StoreFactory, mint_for_database
from tests.workflow.helpers import by_type, create, found_eventually, post, share

pytestmark = pytest.mark.process
YEAR = datetime.now(UTC).year
CLINIC_CLIENT = "clinic-server"
PAYER_SCOPE = "system/CoverageEligibilityRequest.c system/Claim.c"
GROSS = sum(price for _, price in PRICES.values())
PRIMARY_COPAY = Decimal(30)
SECONDARY_COPAY = Decimal(10)
# The secondary plan's deductible: one that leaves it 12 of the bill to pay, less than the
# primary's copay (the patient still owes the difference), and none (the plan alone would pay
# nearly all the bill: it pays what the primary left, and the patient owes nothing).
DEDUCTIBLES = [GROSS - SECONDARY_COPAY - Decimal(12), None]


@pytest.fixture
def clinic_key(tmp_path: Path) -> tuple[Path, Path]:
    return client_key_files(tmp_path)


@pytest.fixture
def settings_overrides(clinic_key: tuple[Path, Path]) -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic",
            "fhir_client_key_file": clinic_key[0], "fhir_payer_read_timeout": 10.0}


@pytest.fixture
async def payer_store(new_store: StoreFactory) -> AsyncIterator[Store]:
    store = new_store()
    yield store
    await store.drop()


@pytest.fixture
def payer(payer_store: Store, clinic_key: tuple[Path, Path]) -> Iterator[ServerProcess]:
    with payer_process(payer_store, client_id=CLINIC_CLIENT, jwks_file=clinic_key[1],
                       scope=PAYER_SCOPE) as server:
        yield server


def plan(patient_ref: str, payer_ref: str, member_id: str, *, order: int, copay: Decimal,
         deductible: Decimal | None = None) -> dict[str, Any]:
    return {**coverage(patient=patient_ref, payer=payer_ref, member_id=member_id,
                       start=f"{YEAR}-01-01", end=f"{YEAR}-12-31", copay=copay,
                       deductible=deductible), "order": order}


async def setup_payer(p: httpx.AsyncClient, secondary_deductible: Decimal | None) -> None:
    """The payer's two plans and its member in each."""
    for name, payer_id, member_id, order, copay, deductible in (
            ("Acme Health", "ACME", "P-1", 1, PRIMARY_COPAY, None),
            ("Beta Care", "BETA", "S-1", 2, SECONDARY_COPAY, secondary_deductible)):
        org = await create(p, payer_org(name, payer_id))
        person = await create(p, patient(family=f"Member{member_id}"))
        await create(p, plan(f"Patient/{person['id']}", f"Organization/{org['id']}", member_id,
                             order=order, copay=copay, deductible=deductible))


@pytest.mark.parametrize("secondary_deductible", DEDUCTIBLES)
async def test_the_secondary_is_billed_what_the_primary_left(
        client: httpx.AsyncClient, payer: ServerProcess, payer_store: Store,
        secondary_deductible: Decimal | None) -> None:
    headers = {"Authorization": f"Bearer {await mint_for_database(payer_store, payer.base)}"}
    async with httpx.AsyncClient(base_url=payer.base + "/", headers=headers,
                                 timeout=HTTP_TIMEOUT) as p:
        await setup_payer(p, secondary_deductible)
    r = await client.put("Organization/clinic", json={"resourceType": "Organization",
                                                      "id": "clinic", "name": "Clinic"})
    assert r.status_code == 201
    for code in PRICES:
        await create(client, charge_item_definition(code))
    endpoint = await create(client, {
        "resourceType": "Endpoint", "status": "active", "address": payer.base,
        "extension": [{"url": "https://fhir-rcm-server.org/StructureDefinition/endpoint-oauth2",
                       "extension": [{"url": "clientId", "valueString": CLINIC_CLIENT},
                                     {"url": "scope", "valueString": PAYER_SCOPE}]}],
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "hl7-fhir-rest"},
        "payloadType": [{"text": "FHIR R4"}]})
    orgs = [await create(client, payer_org(name, payer_id, endpoint=f"Endpoint/{endpoint['id']}"))
            for name, payer_id in (("Acme Health", "ACME"), ("Beta Care", "BETA"))]
    pat = f"Patient/{(await create(client, patient(family='Twoplans')))['id']}"
    # Created secondary first: the order, not the ids, says which pays first.
    secondary = await create(client, plan(pat, f"Organization/{orgs[1]['id']}", "S-1", order=2,
                                          copay=SECONDARY_COPAY))
    primary = await create(client, plan(pat, f"Organization/{orgs[0]['id']}", "P-1", order=1,
                                        copay=PRIMARY_COPAY))

    r = await post(client, "Invoice/$generate-bill",
                   bill_parameters(pat, [service(code) for code in PRICES]))
    assert r.status_code == 200, r.text
    bill = by_type(r.json())
    [invoice], [claim] = bill["Invoice"], bill["Claim"]
    assert [(i["sequence"], i["focal"], i["coverage"]["reference"]) for i in claim["insurance"]] \
        == [(1, True, f"Coverage/{primary['id']}"), (2, False, f"Coverage/{secondary['id']}")]

    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text
    first = r.json()
    primary_paid = GROSS - PRIMARY_COPAY
    assert Decimal(str(first["payment"]["amount"]["value"])) == primary_paid

    # The next-payer worker bills the rest to the secondary, naming the primary's answer.
    [after] = [c for c in await found_eventually(client, "Claim", {"patient": pat}, total=2)
               if c["id"] != claim["id"]]
    assert after["related"][0]["claim"] == {"reference": f"Claim/{claim['id']}"}
    assert after["related"][0]["relationship"]["coding"][0]["code"] == "prior"
    assert after["insurer"] == {"reference": f"Organization/{orgs[1]['id']}"}
    assert [(i["sequence"], i["focal"], i.get("claimResponse")) for i in after["insurance"]] == [
        (1, False, {"reference": f"ClaimResponse/{first['id']}"}), (2, True, None)]
    assert after["item"] == claim["item"] and after["total"] == claim["total"]
    [second] = await found_eventually(client, "ClaimResponse",
                                      {"request": f"Claim/{after['id']}"})
    assert second["outcome"] == "complete"
    # The secondary plan alone would pay GROSS - its copay - its deductible; it pays at most
    # what the primary left.
    alone = GROSS - SECONDARY_COPAY - (secondary_deductible or 0)
    secondary_paid = min(alone, GROSS - primary_paid)
    assert Decimal(str(second["payment"]["amount"]["value"])) == secondary_paid
    assert second["insurance"][0]["coverage"] == {"reference": f"Coverage/{secondary['id']}"}

    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    owed = GROSS - primary_paid - secondary_paid
    assert share(stored, "insurer") == primary_paid + secondary_paid
    assert share(stored, "patient") == owed
    assert stored["status"] == ("issued" if owed else "balanced")
    # Nothing is billed after the last Coverage.
    await asyncio.sleep(1)
    assert len(await found_eventually(client, "Claim", {"patient": pat}, total=2)) == 2
