"""Posting 835s and payments in-process: bad X12 refused with nothing written, claims
this server never sent reported, overpayment as credit, control numbers that survive a
restart."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.adapters.x12.state import X12State
from fhir_server.main import create_app
from tests.support.store import Store, make_settings
from tests.workflow.helpers import create, post, share
from tests.x12.world import (
    PAYER_ID,
    PAYER_TIN,
    X12,
    remit_for,
    submitted,
)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic"}


async def counts(http: httpx.AsyncClient) -> tuple[int, ...]:
    out = []
    for type_ in ("PaymentReconciliation", "DocumentReference", "ClaimResponse"):
        out.append((await http.get(f"{type_}?_summary=count")).json()["total"])
    return tuple(out)


def broken(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.process
async def test_bad_835s_are_refused_naming_where_and_write_nothing(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await submitted(client, clearinghouse)
    good = remit_for(done["claim"], trace="EFT9")
    before = await counts(client)
    se = next(s for s in good.split("~") if s.startswith("SE*"))
    n = int(se.split("*")[1])
    # Positions count segments from the ISA (1).
    bpr_at = [s.strip().split("*")[0] for s in good.split("~")].index("BPR") + 1
    cases = {
        "wrong SE count": (broken(good, se, f"SE*{n + 1}*{se.split('*')[2]}"), "SE segment"),
        "IEA control number": (broken(good, "IEA*1*000000700", "IEA*1*000000701"), "IEA"),
        "not X12": ("hello", "ISA"),
        "unbalanced BPR": (broken(good, "BPR*I*620*", "BPR*I*600*"), f"BPR segment {bpr_at}, element 2"),
        "missing TRN trace": (broken(good, "TRN*1*EFT9*", "TRN*1**"), "TRN"),
    }
    for name, (text, where) in cases.items():
        r = await client.post("PaymentReconciliation/$import-835", content=text.encode(),
                              headers=X12)
        assert r.status_code == 400, (name, r.text)
        assert where in r.json()["issue"][0]["diagnostics"], (name, r.text)
    stranger = broken(good, f"REF*2U*{PAYER_ID}", "REF*2U*NOBODY")
    stranger = broken(stranger, f"*1{PAYER_TIN}", "*1000000000")
    stranger = broken(stranger, f"*1{PAYER_TIN}", "*1000000000")
    r = await client.post("PaymentReconciliation/$import-835", content=stranger.encode(),
                          headers=X12)
    assert r.status_code == 422 and "payer" in r.json()["issue"][0]["diagnostics"], r.text
    assert await counts(client) == before
    invoice = (await client.get(f"Invoice/{done['invoice']['id']}")).json()
    assert share(invoice, "insurer") == 0


@pytest.mark.slow
@pytest.mark.process
async def test_clp_for_a_claim_never_sent_is_listed_not_posted(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await submitted(client, clearinghouse)
    text = remit_for(done["claim"], trace="EFT10", claim_id="NOT-OURS-1")
    parameters = {"resourceType": "Parameters", "parameter": [
        {"name": "attachment", "valueAttachment": {
            "contentType": "application/edi-x12",
            "data": __import__("base64").b64encode(text.encode()).decode()}}]}
    r = await post(client, "PaymentReconciliation/$import-835", parameters)
    assert r.status_code == 200, r.text
    out = {p["name"]: p["resource"] for p in r.json()["parameter"]}
    warnings = [i for i in out["outcome"]["issue"] if i["severity"] == "warning"]
    assert len(warnings) == 1 and "NOT-OURS-1" in warnings[0]["diagnostics"]
    detail = out["paymentReconciliation"]["detail"][0]
    assert "request" not in detail and detail["identifier"]["value"] == "NOT-OURS-1"
    invoice = (await client.get(f"Invoice/{done['invoice']['id']}")).json()
    assert share(invoice, "insurer") == 0 and invoice["status"] == "issued"


@pytest.mark.process
async def test_overpayment_shows_as_credit_and_bad_payments_are_refused(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await submitted(client, clearinghouse)
    invoice_id = done["invoice"]["id"]
    gross = Decimal(str(done["invoice"]["totalGross"]["value"]))

    def payment(value: Any, method: str = "CHCK", currency: str = "USD") -> dict[str, Any]:
        return {"resourceType": "Parameters", "parameter": [
            {"name": "amount", "valueMoney": {"value": value, "currency": currency}},
            {"name": "method", "valueCode": method}]}

    for bad in (payment(Decimal(-5)), payment(Decimal(5), method="BITCOIN"),
                payment(Decimal(5), currency="EUR")):
        r = await post(client, f"Invoice/{invoice_id}/$record-payment", bad)
        assert r.status_code == 422, r.text
    r = await post(client, f"Invoice/{invoice_id}/$record-payment", payment(gross + 20))
    assert r.status_code == 200, r.text
    invoice = next(p["resource"] for p in r.json()["parameter"] if p["name"] == "invoice")
    assert invoice["status"] == "balanced"
    assert share(invoice, "credit") == 20 and share(invoice, "patient") == 0
    insurer = await create(client, {"resourceType": "Organization", "name": "Other payer"})
    r = await post(client, f"Invoice/{invoice_id}/$record-payment", {
        **payment(Decimal(10)), "parameter": [*payment(Decimal(10))["parameter"], {
            "name": "payer", "valueReference": {"reference": f"Organization/{insurer['id']}"}}]})
    invoice = next(p["resource"] for p in r.json()["parameter"] if p["name"] == "invoice")
    assert share(invoice, "insurer") == 10 and share(invoice, "credit") == 30


async def test_control_numbers_are_unique_and_survive_a_restart(
        app: FastAPI, store: Store) -> None:
    state = X12State(app.state.repo.records)
    first = [await state.next_number("interchange") for _ in range(3)]
    await state.put_cursor("Endpoint/a", "f00002")
    again = create_app(make_settings(store))
    async with again.router.lifespan_context(again):
        later = X12State(again.state.repo.records)
        assert await later.next_number("interchange") == first[-1] + 1
        assert await later.cursor("Endpoint/a") == "f00002"
    assert first == sorted(set(first))
