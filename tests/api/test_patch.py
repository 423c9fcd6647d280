"""PATCH with JSON Patch and FHIRPath Patch: validated like an update, all or nothing."""

from __future__ import annotations

import httpx

from tests.factories import patient

JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MRN = "http://clinic.example/mrn"


async def _created(client: httpx.AsyncClient, **kw: object) -> dict:
    resp = await client.post("Patient", json=patient(**kw))  # type: ignore[arg-type]
    assert resp.status_code == 201
    return resp.json()


async def test_json_patch(client: httpx.AsyncClient) -> None:
    pid = (await _created(client))["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "female"},
           {"op": "add", "path": "/name/0/given/-", "value": "Maria"},
           {"op": "test", "path": "/birthDate", "value": "1974-12-25"}]
    resp = await client.patch(f"Patient/{pid}", json=ops, headers=JSON_PATCH)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["gender"] == "female"
    assert body["name"][0]["given"] == ["Peter", "Maria"]
    assert body["meta"]["versionId"] == "2"
    history = (await client.get(f"Patient/{pid}/_history")).json()
    assert history["entry"][0]["request"]["method"] == "PATCH"


async def test_json_patch_failures_change_nothing(client: httpx.AsyncClient) -> None:
    pid = (await _created(client))["id"]
    failed_test = [{"op": "test", "path": "/gender", "value": "female"},
                   {"op": "replace", "path": "/gender", "value": "other"}]
    resp = await client.patch(f"Patient/{pid}", json=failed_test, headers=JSON_PATCH)
    assert resp.status_code == 422
    invalid_result = [{"op": "replace", "path": "/gender", "value": "robot"}]
    resp = await client.patch(f"Patient/{pid}", json=invalid_result, headers=JSON_PATCH)
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["expression"] == ["Patient.gender"]
    bad_path = [{"op": "remove", "path": "/nothing/here"}]
    assert (await client.patch(f"Patient/{pid}", json=bad_path,
                               headers=JSON_PATCH)).status_code == 422
    not_a_patch = await client.patch(f"Patient/{pid}", json={"op": "remove"}, headers=JSON_PATCH)
    assert not_a_patch.status_code == 400
    current = (await client.get(f"Patient/{pid}")).json()
    assert current["meta"]["versionId"] == "1" and current["gender"] == "male"


async def test_json_patch_failures_name_the_operation_not_the_data(
        client: httpx.AsyncClient) -> None:
    """The outcome says which operation failed and why; no value of the resource is in it
    (the library's messages quote the whole document)."""
    created = await _created(client, family="Zyzzyva-Quintero", given="Marguerite")
    pid = created["id"]
    cases = [
        ([{"op": "add", "path": "/name/7/family", "value": "X"}], 422,
         "operation 0 (add /name/7/family) could not be applied"),
        ([{"op": "replace", "path": "/gender", "value": "female"},
          {"op": "test", "path": "/name/0/family", "value": "Smith"}], 422,
         "operation 1 (test /name/0/family): the test failed"),
        ([{"op": "remove", "path": "/telecom"}], 422,
         "operation 0 (remove /telecom) could not be applied"),
        ([{"op": "bogus", "path": "/gender"}], 400, "operation 0 (bogus /gender) is malformed"),
        ([{"op": "move", "path": "/gender"}], 400, "operation 0 (move /gender) is malformed"),
    ]
    for ops, status, said in cases:
        resp = await client.patch(f"Patient/{pid}", json=ops, headers=JSON_PATCH)
        assert resp.status_code == status, (ops, resp.text)
        text = resp.json()["issue"][0]["diagnostics"]
        assert said in text, (ops, text)
        for value in ("Zyzzyva-Quintero", "Marguerite", created["birthDate"], "male", pid):
            assert value not in text, (ops, text)
    current = (await client.get(f"Patient/{pid}")).json()
    assert current["meta"]["versionId"] == "1"


def _operation(**parts: object) -> dict:
    out = []
    for name, value in parts.items():
        if name.startswith("value"):
            out.append({"name": "value", name: value})
        else:
            kind = "valueInteger" if isinstance(value, int) else "valueString"
            out.append({"name": name, kind if name != "type" else "valueCode": value})
    return {"name": "operation", "part": out}


async def test_fhirpath_patch(client: httpx.AsyncClient) -> None:
    created = await _created(client, identifier=(MRN, "FP-1"))
    pid = created["id"]
    body = {"resourceType": "Parameters", "parameter": [
        _operation(type="replace", path="Patient.gender", valueCode="female"),
        _operation(type="add", path="Patient", name="telecom",
                   valueContactPoint={"system": "phone", "value": "555-0100"}),
        _operation(type="insert", path="Patient.name[0].given", index=0, valueString="Ann"),
        _operation(type="delete", path=f"Patient.identifier.where(system='{MRN}')"),
        _operation(type="add", path="Patient", name="active", valueBoolean=True),
    ]}
    resp = await client.patch(f"Patient/{pid}", json=body,
                              headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert got["gender"] == "female"
    assert got["telecom"] == [{"system": "phone", "value": "555-0100"}]
    assert got["name"][0]["given"] == ["Ann", "Peter"]
    assert "identifier" not in got
    assert got["active"] is True


async def test_fhirpath_patch_move_and_errors(client: httpx.AsyncClient) -> None:
    sent = {**patient(), "name": [{"family": "A"}, {"family": "B"}, {"family": "C"}]}
    pid = (await client.post("Patient", json=sent)).json()["id"]
    move = {"resourceType": "Parameters", "parameter": [
        _operation(type="move", path="Patient.name", source=2, destination=0)]}
    resp = await client.patch(f"Patient/{pid}", json=move)
    assert resp.status_code == 200, resp.text
    assert [n["family"] for n in resp.json()["name"]] == ["C", "A", "B"]
    ambiguous = {"resourceType": "Parameters", "parameter": [
        _operation(type="replace", path="Patient.name", valueHumanName={"family": "X"})]}
    assert (await client.patch(f"Patient/{pid}", json=ambiguous)).status_code == 422
    not_parameters = await client.patch(f"Patient/{pid}", json=patient())
    assert not_parameters.status_code == 400


async def test_patch_if_match_and_conditional(client: httpx.AsyncClient) -> None:
    pid = (await _created(client, identifier=(MRN, "CP-1")))["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    stale = await client.patch(f"Patient/{pid}", json=ops,
                               headers={**JSON_PATCH, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    cond = await client.patch("Patient", params={"identifier": f"{MRN}|CP-1"}, json=ops,
                              headers=JSON_PATCH)
    assert cond.status_code == 200 and cond.json()["gender"] == "other"
    none = await client.patch("Patient", params={"identifier": f"{MRN}|nobody"}, json=ops,
                              headers=JSON_PATCH)
    assert none.status_code == 404
    await client.delete(f"Patient/{pid}")
    gone = await client.patch(f"Patient/{pid}", json=ops, headers=JSON_PATCH)
    assert gone.status_code == 410
