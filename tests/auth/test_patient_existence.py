"""A patient token learns nothing from answers about whether another patient's resource
exists: a PUT, PATCH or DELETE aimed at another patient's id (current or deleted), also a
conditional PUT's body id and a Bundle entry's, answers exactly as one aimed at an id that
does not exist, also for a type with write rules (Appointment); a reference to another
patient's resource "does not resolve" under referential integrity, as an unknown one; and
a booking conflict does not name another patient's Appointment."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.auth.world import FHIR_JSON, created, observation
from tests.support.store import ClientFor
from tests.workflow.test_appointments import appointment


def _answer(resp: httpx.Response, id_: str) -> tuple[int, str, str]:
    """Status, issue code and message, the id in the message made anonymous."""
    issue = resp.json()["issue"][0]
    return resp.status_code, issue["code"], issue.get("diagnostics", "").replace(id_, "<id>")


def _entry_answer(resp: httpx.Response, id_: str) -> tuple[str, str, str]:
    """A batch's one entry: status, issue code and message, the id made anonymous."""
    assert resp.status_code == 200, resp.text
    response = resp.json()["entry"][0]["response"]
    issue = response["outcome"]["issue"][0]
    return response["status"], issue["code"], issue.get("diagnostics", "").replace(id_, "<id>")


def _bundle(kind: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [entry]}


def _note(people: dict[str, str], key: str) -> dict[str, Any]:
    return {"resourceType": "Communication", "status": "completed",
            "subject": {"reference": f"Patient/{people[key]}"}}


async def test_put_and_delete_at_another_patients_id_answer_as_unknown_id(
        pa: httpx.AsyncClient, client: httpx.AsyncClient, people: dict[str, str]) -> None:
    a, b, doc = (f"Patient/{people['a']}", f"Patient/{people['b']}",
                 f"Practitioner/{people['doctor']}")
    theirs = {
        "Appointment": await created(client, appointment(patient_ref=b, actors=[doc],
                                                         start=0, end=30)),
        "Communication": await created(client, _note(people, "b")),
    }
    gone = await created(client, _note(people, "b"))
    assert (await client.delete(f"Communication/{gone}")).status_code == 200
    mine = {"Appointment": appointment(patient_ref=a, actors=[doc], start=60, end=90),
            "Communication": _note(people, "a")}
    targets = [*theirs.items(), ("Communication", gone)]
    for type_, id_ in targets:
        unknown = str(uuid.uuid4())
        answers = [_answer(await pa.put(f"{type_}/{x}", json={**mine[type_], "id": x},
                                        headers=FHIR_JSON), x) for x in (id_, unknown)]
        assert answers[0] == answers[1] and answers[0][0] == 404, (type_, answers)
        deletes = [_answer(await pa.delete(f"{type_}/{x}"), x) for x in (id_, unknown)]
        assert deletes[0] == deletes[1] and deletes[0][0] == 404, (type_, deletes)
    for type_, id_ in theirs.items():  # untouched
        assert (await client.get(f"{type_}/{id_}")).json()["meta"]["versionId"] == "1"
    # The patient's own resources: created with POST, changed with PUT.
    for type_, body in mine.items():
        made = await pa.post(type_, json=body, headers=FHIR_JSON)
        assert made.status_code == 201, made.text
        again = {**made.json()}
        again.pop("meta")
        assert (await pa.put(f"{type_}/{again['id']}", json=again,
                             headers=FHIR_JSON)).status_code == 200


async def test_booking_conflict_names_only_what_the_caller_sees(
        pa: httpx.AsyncClient, client: httpx.AsyncClient, people: dict[str, str]) -> None:
    a, b, doc = (f"Patient/{people['a']}", f"Patient/{people['b']}",
                 f"Practitioner/{people['doctor']}")
    theirs = await created(client, appointment(patient_ref=b, actors=[doc], start=0, end=30))
    overlapping = appointment(patient_ref=a, actors=[doc], start=15, end=45)
    refused = await pa.post("Appointment", json=overlapping, headers=FHIR_JSON)
    assert refused.status_code == 409
    issue = refused.json()["issue"][0]
    assert doc in issue["diagnostics"] and theirs not in refused.text
    # Staff see whose booking it is.
    staff = await client.post("Appointment", json=overlapping, headers=FHIR_JSON)
    assert staff.status_code == 409 and f"Appointment/{theirs}" in staff.text
    # The patient's own booking is named to the patient.
    own = await pa.post("Appointment", json=appointment(patient_ref=a, actors=[doc],
                                                        start=120, end=150),
                        headers=FHIR_JSON)
    assert own.status_code == 201
    clash = await pa.post("Appointment", json=appointment(patient_ref=a, actors=[doc],
                                                          start=130, end=160),
                          headers=FHIR_JSON)
    assert clash.status_code == 409 and f"Appointment/{own.json()['id']}" in clash.text


async def test_conditional_put_with_another_patients_body_id_answers_as_unknown_id(
        pa: httpx.AsyncClient, client: httpx.AsyncClient, people: dict[str, str]) -> None:
    """Criteria that match nothing, and a body id: another patient's id answers 404 like an
    unknown one (not 400 "exists but does not match"), directly, in a batch and in a
    transaction."""
    theirs = await created(client, _note(people, "b"))
    mine = await created(client, _note(people, "a"))
    url = "Communication?_id=zzz"

    def body(x: str) -> dict[str, Any]:
        return {**_note(people, "a"), "id": x}

    def entry(x: str) -> dict[str, Any]:
        return {"resource": body(x), "request": {"method": "PUT", "url": url}}

    unknown = str(uuid.uuid4())
    direct = [_answer(await pa.put(url, json=body(x), headers=FHIR_JSON), x)
              for x in (theirs, unknown)]
    assert direct[0] == direct[1] and direct[0][0] == 404, direct
    tx = [_answer(await pa.post("", json=_bundle("transaction", entry(x)), headers=FHIR_JSON),
                  x) for x in (theirs, unknown)]
    assert tx[0] == tx[1] and tx[0][0] == 404, tx
    batch = [_entry_answer(await pa.post("", json=_bundle("batch", entry(x)),
                                         headers=FHIR_JSON), x) for x in (theirs, unknown)]
    assert batch[0] == batch[1] and batch[0][0] == "404", batch
    assert (await client.get(f"Communication/{theirs}")).json()["meta"]["versionId"] == "1"
    # The patient's own resource that the criteria do not match is still named as such.
    own = await pa.put(url, json=body(mine), headers=FHIR_JSON)
    assert own.status_code == 400 and "does not match the criteria" in own.text
    # Staff are told as before.
    staff = await client.put(url, json=body(theirs), headers=FHIR_JSON)
    assert staff.status_code == 400 and "does not match the criteria" in staff.text


async def test_patch_at_another_patients_id_answers_as_unknown_id(
        pa: httpx.AsyncClient, client: httpx.AsyncClient, people: dict[str, str]) -> None:
    """PATCH, directly (JSON Patch), in a transaction and in a batch (FHIRPath Patch)."""
    theirs = await created(client, _note(people, "b"))
    gone = await created(client, _note(people, "b"))
    assert (await client.delete(f"Communication/{gone}")).status_code == 200
    json_patch = [{"op": "replace", "path": "/status", "value": "in-progress"}]
    fhirpath_patch = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Communication.status"},
        {"name": "value", "valueCode": "in-progress"}]}]}

    def entry(x: str) -> dict[str, Any]:
        return {"resource": fhirpath_patch,
                "request": {"method": "PATCH", "url": f"Communication/{x}"}}

    for id_ in (theirs, gone):
        unknown = str(uuid.uuid4())
        direct = [_answer(await pa.patch(f"Communication/{x}", json=json_patch,
                                         headers={"Content-Type": "application/json-patch+json"}),
                          x) for x in (id_, unknown)]
        assert direct[0] == direct[1] and direct[0][0] == 404, direct
        tx = [_answer(await pa.post("", json=_bundle("transaction", entry(x)),
                                    headers=FHIR_JSON), x) for x in (id_, unknown)]
        assert tx[0] == tx[1] and tx[0][0] == 404, tx
        batch = [_entry_answer(await pa.post("", json=_bundle("batch", entry(x)),
                                             headers=FHIR_JSON), x) for x in (id_, unknown)]
        assert batch[0] == batch[1] and batch[0][0] == "404", batch
    assert (await client.get(f"Communication/{theirs}")).json()["meta"]["versionId"] == "1"
    # The patient's own resource is patched, in a transaction too.
    mine = await created(client, _note(people, "a"))
    done = await pa.post("", json=_bundle("transaction", entry(mine)), headers=FHIR_JSON)
    assert done.status_code == 200, done.text
    assert (await client.get(f"Communication/{mine}")).json()["status"] == "in-progress"


@pytest.mark.parametrize("settings_overrides", [{"fhir_referential_integrity": True}])
async def test_references_to_another_patients_resources_do_not_resolve(
        pa: httpx.AsyncClient, client: httpx.AsyncClient, client_for: ClientFor,
        people: dict[str, str]) -> None:
    """Referential integrity: for a patient token, a reference to what it cannot see does not
    resolve, exactly like an unknown id; public reference data and its own resources do;
    staff resolve against everything."""
    doc = f"Practitioner/{people['doctor']}"
    obs = {key: await created(client, observation(people[key])) for key in ("a", "b")}

    def note(subject: str, about: str | None = None) -> dict[str, Any]:
        out = {"resourceType": "Communication", "status": "completed",
               "subject": {"reference": subject}, "sender": {"reference": doc}}
        if about is not None:
            out["about"] = [{"reference": about}]
        return out

    writer = await client_for("patient/Communication.c", patient=people["a"])
    for app in (pa, writer):
        unknown = str(uuid.uuid4())
        subjects = [_answer(await app.post("Communication", json=note(f"Patient/{x}"),
                                           headers=FHIR_JSON), x)
                    for x in (people["b"], unknown)]
        assert subjects[0] == subjects[1] and subjects[0][0] == 400, subjects
        abouts = [_answer(await app.post("Communication",
                                         json=note(f"Patient/{people['a']}", f"Observation/{x}"),
                                         headers=FHIR_JSON), x) for x in (obs["b"], unknown)]
        assert abouts[0] == abouts[1] and abouts[0][0] == 400, abouts
        # Its own patient and Observation, and the (public) Practitioner, resolve.
        own = await app.post("Communication", json=note(f"Patient/{people['a']}",
                                                        f"Observation/{obs['a']}"),
                             headers=FHIR_JSON)
        assert own.status_code == 201, own.text
    # Staff resolve against everything, as before.
    staff = await client.post("Communication", json=note(f"Patient/{people['b']}",
                                                         f"Observation/{obs['b']}"),
                              headers=FHIR_JSON)
    assert staff.status_code == 201, staff.text
    missing = await client.post("Communication", json=note(f"Patient/{uuid.uuid4()}"),
                                headers=FHIR_JSON)
    assert missing.status_code == 400
