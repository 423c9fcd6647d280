"""``patient/Subscription`` scopes (SMART v2 letters and v1 read/write): a patient-facing app
creates Subscriptions, and reads, searches, updates and deletes only those it made for its
launch patient; another patient's, another app's and the clinic's are not there for it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.auth.principal import Principal
from fhir_server.auth.tokens import Grant
from fhir_server.core.errors import NotFound
from fhir_server.service.write_rules import Change, RuleContext
from fhir_server.subscriptions.rule import SubscriptionRule
from fhir_server.subscriptions.state import state_of
from tests.subscriptions.helpers import subscription
from tests.support.store import ADMIN_CLIENT, ClientFor

V2 = "patient/Subscription.cruds patient/Observation.rs"
V1 = "patient/Subscription.read patient/Subscription.write patient/Observation.read"
HOOK = "https://receiver.example.org/hook"


async def _patient(client: httpx.AsyncClient, family: str) -> str:
    created = await client.post("Patient", json={"resourceType": "Patient",
                                                 "name": [{"family": family}]})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _create(http: httpx.AsyncClient, reason: str) -> str:
    # "off": nothing is delivered, so no version but the client's own is written.
    body = {**subscription("Observation?status=final", HOOK, status="off"), "reason": reason}
    created = await http.post("Subscription", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") == "Subscription"}


@pytest.mark.parametrize("scopes", [V2, V1], ids=["v2", "v1"])
async def test_a_patient_app_reaches_only_the_subscriptions_it_made_for_its_patient(
        client: httpx.AsyncClient, client_for: ClientFor, scopes: str) -> None:
    ann, bob = await _patient(client, "Ann"), await _patient(client, "Bob")
    ann_app = await client_for(scopes, patient=ann, client_id="portal")
    bob_app = await client_for(scopes, patient=bob, client_id="portal")
    other_app = await client_for(scopes, patient=ann, client_id="other-app")
    mine = await _create(ann_app, "mine")
    others = {"bob": await _create(bob_app, "bob's"),
              "another app": await _create(other_app, "another app's"),
              "the clinic": await _create(client, "the clinic's")}

    assert (await ann_app.get(f"Subscription/{mine}")).json()["reason"] == "mine"
    searched = (await ann_app.get("Subscription")).json()
    assert _ids(searched) == {mine} and searched["total"] == 1
    assert (await ann_app.get("Subscription", params={"_summary": "count"})).json()[
        "total"] == 1
    assert _ids((await ann_app.get("Subscription/_history")).json()) == {mine}
    everyone = {mine, *others.values()}
    assert _ids((await client.get("Subscription")).json()) == everyone

    for whose, id_ in others.items():
        for answer in (await ann_app.get(f"Subscription/{id_}"),
                       await ann_app.get(f"Subscription/{id_}/_history"),
                       await ann_app.get(f"Subscription/{id_}/$status"),
                       await ann_app.put(f"Subscription/{id_}", json={
                           **subscription("Observation?", HOOK, status="off"), "id": id_}),
                       await ann_app.delete(f"Subscription/{id_}")):
            assert answer.status_code == 404, (whose, answer.request.method,
                                               answer.request.url, answer.text)
    # Nor through a transaction, whose entries are judged one by one.
    taken = await ann_app.post("", json={
        "resourceType": "Bundle", "type": "transaction", "entry": [{
            "resource": {**subscription("Observation?", HOOK, status="off"),
                         "id": others["bob"]},
            "request": {"method": "PUT", "url": f"Subscription/{others['bob']}"}}]})
    assert taken.status_code == 404, taken.text
    # Still theirs: Bob's app reads it unchanged, Ann's does not.
    kept = await bob_app.get(f"Subscription/{others['bob']}")
    assert kept.status_code == 200 and kept.json()["reason"] == "bob's"
    assert kept.json()["meta"]["versionId"] == "1"
    assert (await ann_app.get(f"Subscription/{others['bob']}")).status_code == 404

    updated = await ann_app.put(f"Subscription/{mine}", json={
        **subscription("Observation?status=final", HOOK, status="off"), "id": mine,
        "reason": "mine, again"})
    assert updated.status_code == 200, updated.text
    assert (await ann_app.get(f"Subscription/{mine}")).json()["reason"] == "mine, again"
    assert (await ann_app.delete(f"Subscription/{mine}")).status_code in (200, 204)
    assert (await ann_app.get("Subscription")).json()["total"] == 0
    assert _ids((await client.get("Subscription")).json()) == set(others.values())


async def test_a_patient_token_without_subscription_scopes_cannot_subscribe(
        client: httpx.AsyncClient, client_for: ClientFor) -> None:
    ann = await _patient(client, "Ann")
    reader = await client_for("patient/Observation.rs patient/Subscription.rs", patient=ann)
    refused = await reader.post("Subscription", json=subscription(
        "Observation?status=final", HOOK, status="off"))
    assert refused.status_code == 403, refused.text


async def test_the_write_rule_keeps_the_owner_of_what_a_patient_token_may_not_change(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    """Under the Subscription's lease, before the new owner is recorded: a write the request's
    own checks let through (none does today) still could not take a Subscription over."""
    ann = await _patient(client, "Ann")
    clinic = await _create(client, "the clinic's")
    resource = (await client.get(f"Subscription/{clinic}")).json()
    records = app.state.repo.records
    before = (await state_of(records, clinic))["owner"]
    assert before is not None and before["client_id"] == ADMIN_CLIENT
    ann_app = Principal.from_grant(Grant(client_id="portal", scope=V2, patient=ann))
    ctx = RuleContext(repo=app.state.repo, settings=app.state.settings, principal=ann_app)
    with pytest.raises(NotFound):
        await SubscriptionRule().check(ctx, Change(type_="Subscription", id_=clinic,
                                                   before=resource, after=resource))
    assert (await state_of(records, clinic))["owner"] == before
