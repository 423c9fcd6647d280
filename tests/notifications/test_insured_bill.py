"""An insured patient's bill is told once the payer has answered, with the patient's
share: told when it was issued, it would ask for the whole total."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.events.event import Event
from fhir_server.events.topics import topics_of
from fhir_server.notifications.messages import event_notice
from tests.factories import (
    PRICES,
    bill_parameters,
    charge_item_definition,
    coverage,
    payer_org,
    service,
)
from tests.notifications.builders import patient
from tests.notifications.peers import Inbox, SmsProvider, arrived, peer_settings, settle
from tests.notifications.records import created
from tests.workflow.helpers import create, post

YEAR = datetime.now(UTC).year


@pytest.fixture
def settings_overrides(smtp_port: int, sms: SmsProvider) -> dict[str, object]:
    return peer_settings(smtp_port, sms, fhir_billing_provider="Organization/clinic")


def amount(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))} USD"


async def insured_bill(client: httpx.AsyncClient, *, copay: Decimal,
                       member_id: str) -> dict[str, Any]:
    """A price list, the clinic, an insured patient and their bill ($generate-bill): the
    bill's resources by type."""
    for code in PRICES:
        await create(client, charge_item_definition(code))
    answer = await client.put("Organization/clinic", json={
        "resourceType": "Organization", "id": "clinic", "name": "Clinic"})
    assert answer.status_code in (200, 201), answer.text
    person = await created(client, patient())
    insurer = await created(client, payer_org("Acme Health", "ACME"))
    await create(client, coverage(patient=f"Patient/{person['id']}",
                                  payer=f"Organization/{insurer['id']}", member_id=member_id,
                                  copay=copay, start=f"{YEAR}-01-01", end=f"{YEAR}-12-31"))
    answer = await post(client, "Invoice/$generate-bill", bill_parameters(
        f"Patient/{person['id']}", [service(code) for code in PRICES]))
    assert answer.status_code == 200, answer.text
    return {e["resource"]["resourceType"]: e["resource"] for e in answer.json()["entry"]}


async def test_an_insured_bill_is_told_with_the_share_the_payer_left(
        client: httpx.AsyncClient, inbox: Inbox, sms: SmsProvider) -> None:
    copay = Decimal(30)
    bill = await insured_bill(client, copay=copay, member_id="M-1")
    assert bill["Invoice"]["status"] == "issued"
    await settle()
    assert inbox.messages == [] and sms.posts == [], "no bill before the payer's answer"

    answer = await client.post("Claim/$submit", json=bill["Claim"])
    assert answer.status_code == 200, answer.text
    [mail] = await arrived(inbox.messages, 1)
    [text] = await arrived(sms.posts, 1)
    total = sum(price for _, price in PRICES.values())
    assert amount(copay) in mail.get_content() and amount(copay) in text.form["Body"]
    assert amount(total) not in mail.get_content()
    assert bill["Invoice"]["id"] in mail.get_content()

    again = await client.post("Claim/$submit", json=bill["Claim"])  # the same answer
    assert again.status_code == 200 and again.json()["id"] == answer.json()["id"]
    await settle()
    assert len(inbox.messages) == 1 and len(sms.posts) == 1


async def test_a_bill_told_after_the_patient_paid_still_asks_for_the_share_the_payer_left(
        app: FastAPI, client: httpx.AsyncClient, inbox: Inbox, sms: SmsProvider) -> None:
    """The notice of a payer's answer made once the patient has paid (a consumer behind, or
    one that restarts and is handed the event again) tells the bill as the answer left it:
    the Invoice's ``patient`` share is what is still owed, 0 after the payment."""
    copay = Decimal(25)
    bill = await insured_bill(client, copay=copay, member_id="M-2")
    response = await client.post("Claim/$submit", json=bill["Claim"])
    assert response.status_code == 200, response.text
    await arrived(inbox.messages, 1)
    paid = await client.post(f"Invoice/{bill['Invoice']['id']}/$record-payment", json={
        "resourceType": "Parameters", "parameter": [
            {"name": "amount", "valueMoney": {"value": float(copay), "currency": "USD"}},
            {"name": "method", "valueCode": "CASH"}]})
    assert paid.status_code == 200, paid.text
    invoice = (await client.get(f"Invoice/{bill['Invoice']['id']}")).json()
    assert invoice["status"] == "balanced"  # nothing owed now

    repo, settings = app.state.repo, app.state.settings
    [change] = [c for c in await repo.events(after=0, limit=10_000)
                if (c.type_, c.id_) == ("ClaimResponse", response.json()["id"])]
    notice = await event_notice(repo, settings, Event.of(change, await topics_of(repo, change)))
    assert notice is not None and notice.about == f"Invoice/{bill['Invoice']['id']}"
    assert notice.values["amount"] == amount(copay)


async def test_a_bill_with_a_secondary_payer_is_told_once_after_the_last_payer(
        client: httpx.AsyncClient, inbox: Inbox, sms: SmsProvider) -> None:
    """Two Coverages (order 1 and 2, this server the payer of both): the primary's answer
    leaves its copay, which the next-payer worker bills to the secondary; the patient is
    told once, what the secondary left, not the primary's copay."""
    primary_copay, secondary_copay = Decimal(30), Decimal(10)
    total = sum(price for _, price in PRICES.values())
    # The secondary plan's deductible leaves it 12 to pay: less than the primary's copay.
    secondary_deductible = total - secondary_copay - 12
    bill = await insured_bill(client, copay=primary_copay, member_id="M-3")
    patient_ref = bill["Claim"]["patient"]["reference"]
    [first] = (await client.get("Coverage", params={"beneficiary": patient_ref})).json()["entry"]
    primary = {**first["resource"], "order": 1}
    assert (await client.put(f"Coverage/{primary['id']}", json=primary)).status_code == 200
    insurer = await created(client, payer_org("Beta Care", "BETA"))
    secondary = await create(client, {**coverage(
        patient=patient_ref, payer=f"Organization/{insurer['id']}", member_id="M-4",
        copay=secondary_copay, deductible=secondary_deductible, start=f"{YEAR}-01-01",
        end=f"{YEAR}-12-31"), "order": 2})
    claim = {**bill["Claim"], "insurance": [
        *bill["Claim"]["insurance"],
        {"sequence": 2, "focal": False, "coverage": {"reference": f"Coverage/{secondary['id']}"}}]}

    answer = await client.post("Claim/$submit", json=claim)
    assert answer.status_code == 200, answer.text
    [mail] = await arrived(inbox.messages, 1)
    owed = primary_copay - min(total - secondary_copay - secondary_deductible, primary_copay)
    assert amount(owed) in mail.get_content(), mail.get_content()
    await settle()
    assert len(inbox.messages) == 1 and len(sms.posts) == 1
