"""``Claim/[id]/$correct`` with this server as the payer (issue 29 item 3): a replacement
(frequency 7) is adjudicated as if the replaced answer's deductible had not been taken and
settles the Invoice in the original's place (not on top of it); a void (8) is answered with
nothing paid and takes the insurer's share off the Invoice. Expected amounts come from
the price list and the plan's copay and deductible."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.factories import PRICES, bill_parameters, service
from tests.workflow.helpers import by_type, post, share
from tests.workflow.test_billing import generate, insured_patient, price_list  # noqa: F401

pytestmark = pytest.mark.usefixtures("price_list")
COPAY, DEDUCTIBLE = Decimal(30), Decimal(100)
GROSS = sum(price for _, price in PRICES.values())
FREQUENCY = "https://fhir-rcm-server.org/StructureDefinition/claim-frequency"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic"}


def frequency(code: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "frequency", "valueCode": code}]}


def paid(response: dict[str, Any]) -> Decimal:
    return Decimal(str(response["payment"]["amount"]["value"]))


async def test_a_replacement_settles_in_place_of_the_original_and_a_void_takes_it_off(
        client: httpx.AsyncClient) -> None:
    patient_ref, _, _ = await insured_patient(client, copay=COPAY, deductible=DEDUCTIBLE)
    bill = by_type(await generate(client, bill_parameters(patient_ref, [
        service(code) for code in PRICES])))
    [claim], [invoice] = bill["Claim"], bill["Invoice"]
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text
    first = r.json()
    assert paid(first) == GROSS - COPAY - DEDUCTIBLE

    r = await post(client, f"Claim/{claim['id']}/$correct", frequency("7"))
    assert r.status_code == 200, r.text
    second = r.json()
    assert paid(second) == GROSS - COPAY - DEDUCTIBLE  # the deductible is not counted met
    replacement = (await client.get(second["request"]["reference"])).json()
    assert replacement["id"] != claim["id"]
    assert replacement["related"][0]["claim"] == {"reference": f"Claim/{claim['id']}"}
    assert {"url": FREQUENCY, "valueCode": "7"} in replacement["extension"]
    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert share(stored, "insurer") == GROSS - COPAY - DEDUCTIBLE  # not twice
    assert share(stored, "patient") == COPAY + DEDUCTIBLE

    r = await post(client, f"Claim/{replacement['id']}/$correct", frequency("8"))
    assert r.status_code == 200, r.text
    assert paid(r.json()) == 0
    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert share(stored, "insurer") == 0 and share(stored, "patient") == GROSS


async def test_what_cannot_be_corrected_is_refused(client: httpx.AsyncClient) -> None:
    patient_ref, _, _ = await insured_patient(client, copay=COPAY)
    [claim] = by_type(await generate(client, bill_parameters(patient_ref, [
        service("OPD001")])))["Claim"]
    r = await post(client, f"Claim/{claim['id']}/$correct", frequency("7"))
    assert r.status_code == 422 and "$submit" in r.json()["issue"][0]["diagnostics"]
    assert (await post(client, "Claim/$submit", claim)).status_code == 200
    r = await post(client, f"Claim/{claim['id']}/$correct", frequency("9"))
    assert r.status_code == 400 and "frequency" in r.json()["issue"][0]["diagnostics"]
    r = await post(client, "Claim/nope/$correct", frequency("8"))
    assert r.status_code == 404
    other = {**claim, "patient": {"reference": "Patient/someone-else"}}
    r = await post(client, f"Claim/{claim['id']}/$correct", {
        "resourceType": "Parameters", "parameter": [
            {"name": "frequency", "valueCode": "7"}, {"name": "claim", "resource": other}]})
    assert r.status_code == 422 and "same patient" in r.json()["issue"][0]["diagnostics"]
