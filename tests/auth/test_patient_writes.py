"""A patient token's writes stay in its own compartment on every reference that places a
resource in one: naming itself somewhere (a Communication's sender) does not let it name
another patient elsewhere (the subject, a recipient), and a resource that is also another
patient's may be read but not changed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_server.search.compartment import patient_compartment
from tests.auth.world import FHIR_JSON, created, ids
from tests.support.store import ClientFor


def communication(*, subject: str, sender: str, recipient: str) -> dict[str, Any]:
    return {"resourceType": "Communication", "status": "completed",
            "subject": {"reference": subject}, "sender": {"reference": sender},
            "recipient": [{"reference": recipient}],
            "payload": [{"contentString": "Please call me back"}]}


@pytest.fixture
async def pb(client_for: ClientFor, people: dict[str, str]) -> httpx.AsyncClient:
    return await client_for("patient/*.rs", patient=people["b"])


def test_communication_params_are_compartment_references() -> None:
    """The test's premise: subject, sender and recipient each place a Communication."""
    assert {"subject", "sender", "recipient"} <= set(patient_compartment()["Communication"])


async def test_create_naming_another_patient_is_refused(
        pa: httpx.AsyncClient, pb: httpx.AsyncClient, client: httpx.AsyncClient,
        people: dict[str, str]) -> None:
    a, b, doctor = (f"Patient/{people['a']}", f"Patient/{people['b']}",
                    f"Practitioner/{people['doctor']}")
    for body, where in ((communication(subject=b, sender=a, recipient=doctor), "subject"),
                        (communication(subject=a, sender=a, recipient=b), "recipient")):
        resp = await pa.post("Communication", json=body, headers=FHIR_JSON)
        assert resp.status_code == 403, resp.text
        issue = resp.json()["issue"][0]
        assert where in issue["diagnostics"]
        assert issue["expression"] == [f"Communication.{where}"]
    assert ids((await pb.get("Communication")).json()) == set()
    assert (await client.get("Communication", params={"_summary": "count"})).json()[
        "total"] == 0
    ok = await pa.post("Communication", json=communication(subject=a, sender=a,
                                                           recipient=doctor),
                       headers=FHIR_JSON)
    assert ok.status_code == 201


async def test_shared_resource_is_readable_not_changeable(
        pa: httpx.AsyncClient, client: httpx.AsyncClient, people: dict[str, str]) -> None:
    a, b = f"Patient/{people['a']}", f"Patient/{people['b']}"
    shared = await created(client, communication(subject=b, sender=b, recipient=a))
    read = await pa.get(f"Communication/{shared}")
    assert read.status_code == 200  # a is a recipient: in a's compartment
    body = read.json()
    body["status"] = "entered-in-error"
    assert (await pa.put(f"Communication/{shared}", json=body,
                         headers=FHIR_JSON)).status_code == 403
    assert (await pa.delete(f"Communication/{shared}")).status_code == 403
    kept = (await client.get(f"Communication/{shared}")).json()
    assert kept["meta"]["versionId"] == "1" and kept["status"] == "completed"


async def test_transaction_naming_another_patient_writes_nothing(
        pa: httpx.AsyncClient, client: httpx.AsyncClient, people: dict[str, str]) -> None:
    a, b, doctor = (f"Patient/{people['a']}", f"Patient/{people['b']}",
                    f"Practitioner/{people['doctor']}")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": communication(subject=a, sender=a, recipient=doctor),
         "request": {"method": "POST", "url": "Communication"}},
        {"resource": {"resourceType": "Appointment", "status": "proposed",
                      "participant": [{"actor": {"reference": a}, "status": "accepted"},
                                      {"actor": {"reference": b}, "status": "accepted"}]},
         "request": {"method": "POST", "url": "Appointment"}}]}
    resp = await pa.post("", json=bundle, headers=FHIR_JSON)
    assert resp.status_code == 403, resp.text
    for type_ in ("Communication", "Appointment"):
        assert (await client.get(type_, params={"_summary": "count"})).json()["total"] == 0
