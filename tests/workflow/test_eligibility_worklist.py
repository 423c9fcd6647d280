"""The check-eligibility step's worklist over REST: a finished visit whose bill cannot pick
the patient's Coverage (two in force with no order between them, or active Coverage none
of which is in force on the day) is not billed on a guess: it waits as a check-eligibility
Task about the Coverage in question, and ``$retry`` bills it once the Coverages tell."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from fhir_server.revenue.coverage import (
    CoverageUndecided,
    billed_coverage,
    claim_insurance,
    lapsed_coverages,
)
from tests.factories import (
    PRICES,
    bill_parameters,
    charge_item_definition,
    coverage,
    patient,
    payer_org,
    service,
)
from tests.workflow.helpers import (
    WORKLIST,
    create,
    found_eventually,
    post,
    requested,
    settings_overrides,  # noqa: F401 (the fixture, used by name)
)
from tests.workflow.test_billing import YEAR
from tests.workflow.test_worklist import visit

CHECK = f"{WORKLIST}|check-eligibility"
BILL_VISIT = f"{WORKLIST}|bill-visit"
FAMILY = "Eligibilitypatient"  # health data that must not reach statusReason
SERVICE_DAY = f"{YEAR}-03-02"  # the day tests.workflow.test_worklist.visit starts
RETRY = {"resourceType": "Parameters"}


async def patient_with(client: httpx.AsyncClient,
                       periods: list[tuple[str, str]]) -> tuple[str, list[dict[str, Any]]]:
    """A patient with an active Coverage (each with its own payer) per period."""
    pat = await create(client, patient(family=FAMILY))
    ref = f"Patient/{pat['id']}"
    coverages = []
    for n, (start, end) in enumerate(periods):
        payer = await create(client, payer_org(f"Payer {n}", f"P{n}"))
        coverages.append(await create(client, coverage(
            patient=ref, payer=f"Organization/{payer['id']}", member_id=f"M-{n}",
            start=start, end=end)))
    return ref, coverages


async def finished(client: httpx.AsyncClient, patient_ref: str,
                   charges: dict[str, int]) -> dict[str, Any]:
    enc = await visit(client, patient_ref, charges)
    r = await client.put(f"Encounter/{enc['id']}", json={**enc, "status": "finished"})
    assert r.status_code == 200, r.text  # the visit is recorded whatever its billing
    return enc


async def task_of(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    out: dict[str, Any] = (await client.get(f"Task/{task_id}")).json()
    return out


async def test_two_coverages_without_order_wait_for_a_check(client: httpx.AsyncClient) -> None:
    for code in PRICES:
        await create(client, charge_item_definition(code))
    this_year = (f"{YEAR}-01-01", f"{YEAR}-12-31")
    patient_ref, coverages = await patient_with(client, [this_year, this_year])
    charges = {"OPD001": 1, "LAB025": 1}
    enc = await finished(client, patient_ref, charges)
    [task] = await found_eventually(client, "Task", {"code": CHECK, "status": "failed"})
    first, second = sorted(coverages, key=lambda c: c["id"])
    assert task["focus"] == {"reference": f"Coverage/{first['id']}"}
    assert task["for"] == {"reference": patient_ref}
    assert task["encounter"] == {"reference": f"Encounter/{enc['id']}"}
    reason = task["statusReason"]["text"]
    assert all(f"Coverage/{c['id']}" in reason for c in coverages) and SERVICE_DAY in reason
    assert "order" in reason and FAMILY not in str(task)
    assert task["contained"][0]["resourceType"] == "OperationOutcome"
    # Nothing was billed on a guess, and the visit has no other Task.
    assert (await client.get("Invoice", params={"subject": patient_ref})).json()["total"] == 0
    assert (await client.get("Task")).json()["total"] == 1
    # $generate-bill, with its caller present, answers the same reason (and makes no Task).
    r = await post(client, "Invoice/$generate-bill",
                   bill_parameters(patient_ref, [service("OPD001")]))
    assert r.status_code == 422 and "no order" in r.json()["issue"][0]["diagnostics"], r.text
    # Retried as it is: still failed, the same Task.
    r = await post(client, f"Task/{task['id']}/$retry", RETRY)
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text
    assert (await client.get("Task")).json()["total"] == 1

    # The second Coverage (not the first by id) is made primary: the retry bills it.
    r = await client.put(f"Coverage/{second['id']}", json={**second, "order": 1})
    assert r.status_code == 200, r.text
    r = await post(client, f"Task/{task['id']}/$retry", RETRY)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed" and "statusReason" not in done
    [invoice] = (await found_eventually(client, "Invoice", {"subject": patient_ref}))
    [claim] = await found_eventually(client, "Claim", {"patient": patient_ref})
    assert claim["insurance"][0]["coverage"] == {"reference": f"Coverage/{second['id']}"}
    expected = sum((PRICES[code][1] * n for code, n in charges.items()), Decimal(0))
    assert Decimal(str(invoice["totalGross"]["value"])) == expected
    assert {o["valueReference"]["reference"] for o in done["output"]} == {
        f"Invoice/{invoice['id']}", f"Claim/{claim['id']}"}


async def test_a_check_eligibility_task_set_to_requested_bills_the_visit_again(
        client: httpx.AsyncClient) -> None:
    for code in PRICES:
        await create(client, charge_item_definition(code))
    this_year = (f"{YEAR}-01-01", f"{YEAR}-12-31")
    patient_ref, coverages = await patient_with(client, [this_year, this_year])
    enc = await finished(client, patient_ref, {"OPD001": 1})
    [task] = await found_eventually(client, "Task", {"code": CHECK, "status": "failed"})
    # Requested as it is: the worker runs the step, which fails again with the reason.
    again = await requested(client, task["id"])
    assert again["status"] == "failed" and "order" in again["statusReason"]["text"]
    assert (await client.get("Task")).json()["total"] == 1
    # The second Coverage is made primary: requested, the worker bills the visit with it.
    second = max(coverages, key=lambda c: c["id"])
    r = await client.put(f"Coverage/{second['id']}", json={**second, "order": 1})
    assert r.status_code == 200, r.text
    done = await requested(client, task["id"])
    assert done["status"] == "completed" and "statusReason" not in done
    [invoice] = await found_eventually(client, "Invoice", {"subject": patient_ref})
    [claim] = await found_eventually(client, "Claim", {"patient": patient_ref})
    assert claim["insurance"][0]["coverage"] == {"reference": f"Coverage/{second['id']}"}
    assert invoice["subject"] == {"reference": patient_ref}
    assert done["encounter"] == {"reference": f"Encounter/{enc['id']}"}
    assert {o["valueReference"]["reference"] for o in done["output"]} == {
        f"Invoice/{invoice['id']}", f"Claim/{claim['id']}"}


async def test_coverage_not_in_force_waits_and_a_bill_visit_task_points_at_it(
        client: httpx.AsyncClient) -> None:
    await create(client, charge_item_definition("OPD001"))  # LAB025 has no price yet
    lapsed = (f"{YEAR - 1}-01-01", f"{YEAR - 1}-12-31")
    patient_ref, [old] = await patient_with(client, [lapsed])
    enc = await finished(client, patient_ref, {"OPD001": 1, "LAB025": 1})
    [billing] = await found_eventually(client, "Task", {"code": BILL_VISIT, "status": "failed"})
    assert "LAB025" in billing["statusReason"]["text"]

    # The price is added: the bill now stops at the Coverage, which has lapsed.
    await create(client, charge_item_definition("LAB025"))
    r = await post(client, f"Task/{billing['id']}/$retry", RETRY)
    assert r.status_code == 200, r.text
    [task] = await found_eventually(client, "Task", {"code": CHECK, "status": "failed"})
    assert task["focus"] == {"reference": f"Coverage/{old['id']}"}
    assert task["encounter"] == {"reference": f"Encounter/{enc['id']}"}
    reason = task["statusReason"]["text"]
    assert all(v in reason for v in (f"Coverage/{old['id']}", SERVICE_DAY, *lapsed)), reason
    assert "none is in force" in reason
    pointed = r.json()
    assert pointed["id"] == billing["id"] and pointed["status"] == "failed"
    assert f"Task/{task['id']}" in pointed["statusReason"]["text"]
    assert (await client.get("Invoice", params={"subject": patient_ref})).json()["total"] == 0

    # The Coverage is cancelled (the patient pays): the retry bills the visit without a
    # Claim, and both Tasks are completed with the Invoice.
    r = await client.put(f"Coverage/{old['id']}", json={**old, "status": "cancelled"})
    assert r.status_code == 200, r.text
    r = await post(client, f"Task/{task['id']}/$retry", RETRY)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    [invoice] = await found_eventually(client, "Invoice", {"subject": patient_ref})
    assert (await client.get("Claim", params={"patient": patient_ref})).json()["total"] == 0
    expected = sum((price for _, price in PRICES.values()), Decimal(0))
    assert Decimal(str(invoice["totalGross"]["value"])) == expected
    for done in (await task_of(client, task["id"]), await task_of(client, billing["id"])):
        assert done["status"] == "completed"
        assert [o["valueReference"]["reference"] for o in done["output"]] == [
            f"Invoice/{invoice['id']}"]


def test_the_coverage_billed_or_why_not() -> None:
    day = date(2026, 3, 2)
    year = {"start": "2026-01-01", "end": "2026-12-31"}
    a = {"id": "a", "status": "active", "period": year}
    b = {"id": "b", "status": "active", "period": year}
    assert billed_coverage([], day) is None  # no Coverage: the patient pays
    assert billed_coverage([{**a, "status": "cancelled"}], day) is None
    assert billed_coverage([a], day) is a
    assert billed_coverage([{**a, "order": 2}, b], day)["id"] == "a"  # type: ignore[index]
    assert billed_coverage([{**a, "order": 2}, {**b, "order": 1}], day)["id"] == "b"  # type: ignore[index]
    for tied in ([a, b], [{**a, "order": 1}, {**b, "order": 1}]):
        with pytest.raises(CoverageUndecided) as raised:
            billed_coverage(list(reversed(tied)), day)
        assert raised.value.focus == "Coverage/a"
        assert "Coverage/a" in raised.value.diagnostics and "Coverage/b" in raised.value.diagnostics
    ended = {**a, "period": {"start": "2024-01-01", "end": "2024-12-31"}}
    later = {**b, "period": {"start": "2025-01-01", "end": "2025-12-31"}}
    with pytest.raises(CoverageUndecided) as raised:
        billed_coverage([ended, later], day)
    assert raised.value.focus == "Coverage/b"  # the one ended last
    assert "2025-12-31" in raised.value.diagnostics and "2026-03-02" in raised.value.diagnostics


def test_eligibility_answers_leave_coverages_out_and_the_claim_lists_the_rest_in_order() -> None:
    day = date(2026, 3, 2)
    year = {"start": "2026-01-01", "end": "2026-12-31"}
    a, b, c, d = ({"id": x, "status": "active", "period": year} for x in "abcd")

    def answer(id_: str, created: str, inforce: bool, coverage: str | None = None,
               request: str | None = None) -> dict[str, object]:
        entry: dict[str, object] = {"inforce": inforce}
        if coverage:
            entry["coverage"] = {"reference": coverage}
        out: dict[str, object] = {"id": id_, "created": created, "insurance": [entry]}
        if request:
            out["request"] = {"reference": request}
        return out

    requests = {"CoverageEligibilityRequest/r1": {"insurance": [
        {"focal": True, "coverage": {"reference": "Coverage/b"}}]}}
    answers = [answer("1", "2026-03-01T10:00:00Z", False, "Coverage/a"),
               answer("2", "2026-03-01T11:00:00Z", True, "Coverage/a"),  # later: in force
               answer("3", "2026-03-01T09:00:00Z", False, request="CoverageEligibilityRequest/r1")]
    lapsed = lapsed_coverages(answers, requests)
    assert set(lapsed) == {"Coverage/b"} and "CoverageEligibilityResponse/3" in lapsed["Coverage/b"]
    # b (unordered, and lapsed) out; a and c: orders 1 and 3; d shares no order: left out.
    coverages = [{**a, "order": 1}, b, {**c, "order": 3}, d]
    billed = billed_coverage(coverages, day, lapsed)
    assert billed is not None and billed["id"] == "a"
    insurance, why = claim_insurance(billed, coverages, day, lapsed)
    assert [(i["sequence"], i["focal"], i["coverage"]["reference"]) for i in insurance] == [
        (1, True, "Coverage/a"), (2, False, "Coverage/c")]
    assert why.index("Coverage/a") < why.index("Coverage/c")
    assert "Coverage/d (no order" in why and "Coverage/b (its latest" in why
    # Every active Coverage left out: no guess, someone checks again.
    with pytest.raises(CoverageUndecided) as raised:
        billed_coverage([b], day, lapsed)
    assert "not in force" in raised.value.diagnostics
