"""A Subscription created with a patient token notifies what that token may read only:
with user/ Subscription scopes and with patient/ ones alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import orjson
import pytest

from tests.subscriptions.helpers import observation, subscribe, subscription
from tests.subscriptions.receiver import receiver

ClientFor = Callable[..., Awaitable[httpx.AsyncClient]]
SCOPES = "patient/Observation.rs user/Subscription.cru"
# A patient-facing app: its Subscriptions are its own (tests/subscriptions/test_patient_owned.py).
PATIENT_SCOPES = "patient/Observation.rs patient/Subscription.cruds"


async def _patients(client: httpx.AsyncClient) -> tuple[str, str]:
    ids = []
    for name in ("Ann", "Bob"):
        created = await client.post("Patient", json={"resourceType": "Patient",
                                                     "name": [{"family": name}]})
        ids.append(created.json()["id"])
    return ids[0], ids[1]


async def test_a_patient_token_cannot_subscribe_to_another_patient_or_an_unreadable_type(
        client: httpx.AsyncClient, client_for: ClientFor) -> None:
    ann, bob = await _patients(client)
    mine = await client_for(SCOPES, patient=ann)
    for criteria in (f"Observation?subject=Patient/{bob}", f"Observation?patient={bob}",
                     "Claim?"):
        refused = await mine.post("Subscription", json=subscription(
            criteria, "https://receiver.example.org/hook"))
        assert refused.status_code == 403, (criteria, refused.text)
        assert refused.json()["issue"][0]["expression"] == ["Subscription.criteria"]


@pytest.mark.parametrize("scopes", [SCOPES, PATIENT_SCOPES], ids=["user", "patient"])
async def test_full_resource_payloads_never_show_another_patient(
        client: httpx.AsyncClient, client_for: ClientFor, scopes: str) -> None:
    ann, bob = await _patients(client)
    mine = await client_for(scopes, patient=ann)
    with receiver() as hook:
        await subscribe(mine, "Observation?status=final", hook.url,
                        payload="application/fhir+json")
        written = []
        for patient in (bob, ann, bob, ann):
            answer = await client.post("Observation", json=observation("final", patient))
            written.append(answer.json())
        await hook.until(2)
        # One more of Ann's after Bob's last: when it arrives, Bob's were judged and passed.
        last = (await client.post("Observation", json=observation("final", ann))).json()
        got = await hook.until(3)
    anns = [w for w in written if w["subject"]["reference"] == f"Patient/{ann}"] + [last]
    assert [orjson.loads(g.body) for g in got] == anns
    assert all(f"Patient/{bob}".encode() not in g.body for g in got)
