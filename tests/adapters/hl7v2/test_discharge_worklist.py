"""An A03 discharge never waits for billing: with no billing provider for an insured
patient's Claim the ACK is AA and the visit is finished; the bill lands on the worklist as
a failed bill-visit Task, and once the setting is set (a restart), ``$retry`` bills it."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.main import create_app
from tests.adapters.hl7v2.helpers import adt, field, in1, mllp
from tests.adapters.hl7v2.test_adt import MRN_SYSTEM, one
from tests.adapters.hl7v2.test_siu_dft import dft, ft1
from tests.factories import PRICES, charge_item_definition
from tests.support.store import Store, fhir_client, make_settings, mint
from tests.workflow.helpers import create, found_eventually, post, requested

WORKLIST = "https://fhir-rcm-server.org/CodeSystem/worklist"


@pytest.fixture
def settings_overrides(hl7_port: int) -> dict[str, object]:
    return {"fhir_hl7v2_port": hl7_port}  # no FHIR_BILLING_PROVIDER


async def test_discharge_without_billing_provider_is_aa_and_the_bill_waits_on_the_worklist(
        port: int, client: httpx.AsyncClient, store: Store, app: FastAPI) -> None:
    assert app.state.settings.fhir_billing_provider is None
    for code in PRICES:
        await create(client, charge_item_definition(code))
    charges = [ft1(1, code="OPD001", txn="T-1"), ft1(2, code="LAB025", quantity="2", txn="T-2")]
    async with mllp(port) as conn:
        assert (await conn.send(adt("A04", mrn="W1", visit="8001", insurance=[in1()]))).code \
            == "AA"
        assert (await conn.send(dft(mrn="W1", visit="8001", charges=charges))).code == "AA"
        ack = await conn.send(adt("A03", mrn="W1", visit="8001", discharged="202601051200"))
    assert ack.code == "AA", ack.text
    encounter = await one(client, "Encounter", identifier=f"{MRN_SYSTEM}|V8001")
    assert encounter["status"] == "finished"
    patient = encounter["subject"]["reference"]
    [task] = await found_eventually(client, "Task", {"code": f"{WORKLIST}|bill-visit",
                                                     "status": "failed", "patient": patient})
    assert task["focus"] == {"reference": f"Encounter/{encounter['id']}"}
    assert task["for"] == {"reference": patient}
    assert "FHIR_BILLING_PROVIDER" in task["statusReason"]["text"]
    assert task["businessStatus"]["text"]
    [outcome] = task["contained"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert task["output"][0]["valueReference"] == {"reference": f"#{outcome['id']}"}
    assert (await client.get("Invoice", params={"status": "issued"})).json()["total"] == 0

    # The setting is set and the server restarted: $retry bills the visit.
    fixed = create_app(make_settings(store, fhir_billing_provider="Organization/clinic"))
    async with fixed.router.lifespan_context(fixed), \
            fhir_client(fixed, await mint(fixed)) as billing:
        r = await post(billing, f"Task/{task['id']}/$retry", {"resourceType": "Parameters"})
        assert r.status_code == 200, r.text
        done = r.json()
    assert done["id"] == task["id"] and done["status"] == "completed"
    [invoice] = (await found_eventually(client, "Invoice", {"status": "issued"}))
    [claim] = await found_eventually(client, "Claim", {"patient": patient})
    assert claim["provider"] == {"reference": "Organization/clinic"}
    expected = sum((PRICES[field(c, "FT1", 7)][1] * Decimal(field(c, "FT1", 10))
                    for c in charges), Decimal(0))
    assert Decimal(str(invoice["totalGross"]["value"])) == expected
    assert {o["valueReference"]["reference"] for o in done["output"]} == {
        f"Invoice/{invoice['id']}", f"Claim/{claim['id']}"}
    r = await client.get("Task", params={"code": f"{WORKLIST}|bill-visit"})
    assert r.json()["total"] == 1  # the same Task, completed


async def test_a_discharge_bill_task_set_to_requested_is_billed_by_the_worklist_worker(
        port: int, client: httpx.AsyncClient) -> None:
    for code in PRICES:
        await create(client, charge_item_definition(code))
    async with mllp(port) as conn:
        assert (await conn.send(adt("A04", mrn="W2", visit="8002", insurance=[in1()]))).code \
            == "AA"
        assert (await conn.send(dft(mrn="W2", visit="8002", charges=[
            ft1(1, code="OPD001", txn="T-9")]))).code == "AA"
        ack = await conn.send(adt("A03", mrn="W2", visit="8002", discharged="202601051200"))
    assert ack.code == "AA", ack.text
    encounter = await one(client, "Encounter", identifier=f"{MRN_SYSTEM}|V8002")
    patient = encounter["subject"]["reference"]
    [task] = await found_eventually(client, "Task", {"code": f"{WORKLIST}|bill-visit",
                                                     "status": "failed", "patient": patient})
    # Requested as it is: still no billing provider, failed again with the reason.
    again = await requested(client, task["id"])
    assert again["status"] == "failed"
    assert "FHIR_BILLING_PROVIDER" in again["statusReason"]["text"]
    # The visit names its provider: requested, the worker bills it.
    current = (await client.get(f"Encounter/{encounter['id']}")).json()
    r = await client.put(f"Encounter/{encounter['id']}", json={
        **current, "serviceProvider": {"reference": "Organization/clinic"}})
    assert r.status_code == 200, r.text
    done = await requested(client, task["id"])
    assert done["status"] == "completed" and "statusReason" not in done
    [invoice] = await found_eventually(client, "Invoice", {"subject": patient,
                                                           "status": "issued"})
    [claim] = await found_eventually(client, "Claim", {"patient": patient})
    assert claim["provider"] == {"reference": "Organization/clinic"}
    assert {o["valueReference"]["reference"] for o in done["output"]} == {
        f"Invoice/{invoice['id']}", f"Claim/{claim['id']}"}
