"""The revenue cycle's counters on /metrics, after the operations that move them: a bill
issued, a claim adjudicated and one denied (counted once, also when resubmitted), an
eligibility check; this server answering as the payer (no payer Endpoint)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import (
    PRICES,
    bill_parameters,
    charge_item_definition,
    coverage,
    patient,
    payer_org,
    service,
)
from tests.observability.test_metrics import METRICS, Samples, scrape, value
from tests.workflow.helpers import by_type, create, post

YEAR = datetime.now(UTC).year


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic"}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_bills_claims_and_eligibility_are_counted(app: FastAPI,
                                                        client: httpx.AsyncClient) -> None:
    for code in PRICES:
        await create(client, charge_item_definition(code))
    await client.put("Organization/clinic", json={"resourceType": "Organization",
                                                  "id": "clinic", "name": "Clinic"})
    person = await create(client, patient())
    payer = await create(client, payer_org("Acme Health", "ACME"))
    cov = await create(client, coverage(patient=f"Patient/{person['id']}",
                                        payer=f"Organization/{payer['id']}", member_id="M-1",
                                        start=f"{YEAR}-01-01", end=f"{YEAR}-12-31"))
    before = await scrape(client, METRICS)

    checked = await post(client, f"Coverage/{cov['id']}/$eligibility", {
        "resourceType": "Parameters",
        "parameter": [{"name": "serviced", "valueDate": f"{YEAR}-06-01"}]})
    assert checked.status_code == 200, checked.text
    bill = await post(client, "Invoice/$generate-bill",
                      bill_parameters(f"Patient/{person['id']}", [service("OPD001")]))
    assert bill.status_code == 200, bill.text
    [claim] = by_type(bill.json())["Claim"]
    for _ in range(2):  # the second answers with the first answer: one claim
        answer = await post(client, "Claim/$submit", claim)
        assert answer.json()["outcome"] == "complete"
    late = {**{k: v for k, v in claim.items() if k != "id"}, "identifier": [],
            "item": [{**claim["item"][0], "servicedDate": f"{YEAR + 1}-02-01"}]}
    refused = await post(client, "Claim/$submit", late)
    assert refused.json()["outcome"] == "error"  # coverage not in force then

    after = await scrape(client, METRICS)
    assert delta(before, after, "fhir_eligibility_checks_total", outcome="eligible") == 1
    assert delta(before, after, "fhir_bills_issued_total") == 1
    assert delta(before, after, "fhir_claims_total", event="submitted") == 2
    assert delta(before, after, "fhir_claims_total", event="adjudicated") == 1
    assert delta(before, after, "fhir_claims_total", event="denied") == 1
