"""Transaction and batch rules (FHIR R4 http.html#transaction), against the real database."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from fhir_server.core.config import Settings
from tests.bundles.helpers import (
    assert_failed,
    bundle,
    delete,
    get,
    history_total,
    location,
    outcome_text,
    patch_entry,
    post,
    put,
    reference_of,
    response_entries,
    rewrite,
    send,
    status_code,
    strings,
    total,
    urn,
)
from tests.factories import AMB, TAGS, encounter, observation, patient, without_meta

SYS = "http://test.example/id"
def invalid_observation(subject: str | None = None) -> dict[str, Any]:
    """Not a valid Observation: status outside its required value set, an unknown element."""
    res = observation(subject)
    res["status"] = "not-a-status"
    res["notAnElement"] = True
    return res


async def created(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(resource["resourceType"], json=resource)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def read(client: httpx.AsyncClient, reference: str) -> dict[str, Any]:
    resp = await client.get(reference)
    assert resp.status_code == 200, (reference, resp.status_code, resp.text[:500])
    return resp.json()


def strip(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in without_meta(resource).items() if k != "id"}


# -- response shape, urn:uuid / urn:oid rewriting -------------------------------------


async def test_urn_references_rewritten_in_nested_elements_and_extensions(
        client: httpx.AsyncClient) -> None:
    pat, prac, cond = urn(), urn(), urn()
    org = "urn:oid:1.2.840.113619.6.197"
    ext = "http://example.org/fhir/StructureDefinition/responsible-party"
    enc = {
        "resourceType": "Encounter", "status": "finished", "class": AMB,
        "subject": {"reference": pat, "display": "Peter Chalmers"},
        "participant": [{"individual": {"reference": prac}}],
        "serviceProvider": {"reference": org},
        "diagnosis": [{"condition": {"reference": cond}, "rank": 1}],
        "extension": [
            {"url": ext, "valueReference": {"reference": pat}},
            {"url": "http://example.org/fhir/StructureDefinition/complex", "extension": [
                {"url": "who", "valueReference": {"reference": prac}},
                {"url": "coverage", "valueReference": {"reference": "#cov"}}]}],
        "contained": [{"resourceType": "Coverage", "id": "cov", "status": "active",
                       "beneficiary": {"reference": pat}, "payor": [{"reference": org}]}],
    }
    condition = {"resourceType": "Condition", "subject": {"reference": pat},
                 "code": {"text": "sprained ankle"},
                 "extension": [{"url": ext, "valueReference": {"reference": prac}}]}
    practitioner = {"resourceType": "Practitioner", "name": [{"family": "Careful"}]}
    organization = {"resourceType": "Organization", "name": "Payer Inc"}
    # The Encounter comes first: it refers forward to entries later in the Bundle.
    sent = bundle([post(enc, urn()), post(patient(identifier=(SYS, "rw-1")), pat),
                   post(practitioner, prac), post(organization, org), post(condition, cond)])
    entries = response_entries(await send(client, sent), "transaction")
    assert len(entries) == 5
    expected_types = ["Encounter", "Patient", "Practitioner", "Organization", "Condition"]
    for entry, type_ in zip(entries, expected_types, strict=True):
        assert entry["response"]["status"].startswith("201"), entry
        got_type, _, version = location(entry)
        assert (got_type, version) == (type_, "1")
        assert entry["response"]["etag"] == 'W/"1"'
        assert entry["response"].get("lastModified")
    refs = {full: reference_of(entries[i]) for i, full in
            enumerate([None, pat, prac, org, cond]) if full}

    got_enc = await read(client, reference_of(entries[0]))
    assert got_enc["subject"]["reference"] == refs[pat]
    assert got_enc["extension"][0]["valueReference"]["reference"] == refs[pat]
    assert got_enc["extension"][1]["extension"][0]["valueReference"]["reference"] == refs[prac]
    assert got_enc["extension"][1]["extension"][1]["valueReference"]["reference"] == "#cov"
    assert got_enc["contained"][0]["beneficiary"]["reference"] == refs[pat]
    assert got_enc["contained"][0]["payor"][0]["reference"] == refs[org]
    assert got_enc["diagnosis"][0]["condition"]["reference"] == refs[cond]
    assert strip(got_enc) == rewrite(enc, refs)
    got_cond = await read(client, refs[cond])
    assert strip(got_cond) == rewrite(condition, refs)
    for res in (got_enc, got_cond):
        assert not [s for _, s in strings(res) if s.startswith("urn:")]
    # The stored search values come from the rewritten references.
    assert await total(client, "Encounter", {"subject": refs[pat]}) == 1
    assert await total(client, "Encounter", {"diagnosis": refs[cond]}) == 1
    assert await total(client, "Condition", {"subject": refs[pat]}) == 1
    for ref in refs.values():
        await read(client, ref)


async def test_response_entries_follow_request_order(client: httpx.AsyncClient) -> None:
    existing = await created(client, patient(identifier=(SYS, "ord-0")))
    pid = existing["id"]
    sent = bundle([get(f"Patient/{pid}"),
                   put(f"Patient/{pid}", {**without_meta(existing), "gender": "female"}),
                   post(observation(f"Patient/{pid}")),
                   post(patient(identifier=(SYS, "ord-1")))])
    entries = response_entries(await send(client, sent), "transaction")
    assert [status_code(e) for e in entries] == [200, 200, 201, 201]
    assert [location(e)[0] for e in entries[1:]] == ["Patient", "Observation", "Patient"]
    assert location(entries[1])[1:] == (pid, "2")
    assert entries[1]["response"]["etag"] == 'W/"2"'


async def test_post_to_base_without_trailing_slash(client: httpx.AsyncClient) -> None:
    resp = await client.post("http://testserver/fhir", json=bundle([post(patient())]),
                             follow_redirects=True)
    entries = response_entries(resp, "transaction")
    assert status_code(entries[0]) == 201


async def test_bundle_of_another_type_is_refused(client: httpx.AsyncClient) -> None:
    for body in (bundle([post(patient())], "collection"), patient()):
        resp = await send(client, body)
        assert 400 <= resp.status_code < 500, (body.get("type"), resp.status_code)
        assert resp.json()["resourceType"] == "OperationOutcome"
    assert await total(client, "Patient") == 0


# -- processing order ------------------------------------------------------------------


async def test_processing_order_and_gets_see_the_writes(client: httpx.AsyncClient) -> None:
    x = await created(client, patient(identifier=(SYS, "po-x")))
    y = await created(client, patient(identifier=(SYS, "po-y")))
    new = urn()
    y_changed = {**without_meta(y), "gender": "female",
                 "link": [{"other": {"reference": new}, "type": "seealso"}]}
    # Listed in the reverse of processing order: GET, PUT, POST, DELETE.
    sent = bundle([
        get(f"Patient/{y['id']}"),
        get(f"Patient?identifier={SYS}|po-new"),
        get(f"Patient?_id={x['id']}"),
        put(f"Patient/{y['id']}", y_changed),
        post(patient(identifier=(SYS, "po-new"), family="Newcomer"), new),
        delete(f"Patient/{x['id']}"),
    ])
    entries = response_entries(await send(client, sent), "transaction")
    assert len(entries) == 6
    assert [status_code(e) for e in entries[:5]] == [200, 200, 200, 200, 201]
    assert status_code(entries[5]) in (200, 204)
    new_ref = reference_of(entries[4])

    seen_y = entries[0]["resource"]
    assert seen_y["meta"]["versionId"] == "2" and seen_y["gender"] == "female"
    assert seen_y["link"][0]["other"]["reference"] == new_ref
    found_new = entries[1]["resource"]
    assert found_new["resourceType"] == "Bundle" and found_new["type"] == "searchset"
    assert [e["resource"]["id"] for e in found_new.get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"] == [new_ref.split("/")[1]]
    found_x = entries[2]["resource"]
    assert found_x["resourceType"] == "Bundle" and not [
        e for e in found_x.get("entry", []) if e.get("resource", {}).get("resourceType") == "Patient"]

    assert (await client.get(f"Patient/{x['id']}")).status_code == 410
    after_y = await read(client, f"Patient/{y['id']}")
    assert after_y["meta"]["versionId"] == "2"
    assert after_y["link"][0]["other"]["reference"] == new_ref
    assert (await read(client, new_ref))["name"][0]["family"] == "Newcomer"


async def test_delete_is_processed_before_conditional_create(client: httpx.AsyncClient) -> None:
    x = await created(client, patient(identifier=(SYS, "dbc-1")))
    sent = bundle([post(patient(identifier=(SYS, "dbc-1"), family="Successor"),
                        if_none_exist=f"identifier={SYS}|dbc-1"),
                   delete(f"Patient/{x['id']}")])
    resp = await send(client, sent)
    if resp.status_code != 200:
        # Also defensible: the ifNoneExist match and the DELETE name the same resource, and
        # overlapping identities fail the transaction; then nothing changes.
        assert 400 <= resp.status_code < 500, resp.text
        assert (await read(client, f"Patient/{x['id']}"))["meta"]["versionId"] == "1"
        return
    entries = response_entries(resp, "transaction")
    assert status_code(entries[1]) in (200, 204)
    # DELETE runs first, so the ifNoneExist search finds nothing and the POST creates.
    assert status_code(entries[0]) == 201, entries[0]
    assert reference_of(entries[0]) != f"Patient/{x['id']}"
    found = await client.get("Patient", params={"identifier": f"{SYS}|dbc-1"})
    ids = [e["resource"]["id"] for e in found.json().get("entry", [])]
    assert ids == [location(entries[0])[1]]
    assert (await client.get(f"Patient/{x['id']}")).status_code == 410


async def test_patch_entry(client: httpx.AsyncClient) -> None:
    pid = (await created(client, patient()))["id"]
    params = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.gender"},
        {"name": "value", "valueCode": "female"}]}]}
    entries = response_entries(await send(client, bundle([patch_entry(f"Patient/{pid}", params)])),
                               "transaction")
    assert status_code(entries[0]) == 200
    assert location(entries[0])[1:] == (pid, "2")
    got = await read(client, f"Patient/{pid}")
    assert got["gender"] == "female" and got["meta"]["versionId"] == "2"

    bad = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.gender"},
        {"name": "value", "valueCode": "robot"}]}]}
    resp = await send(client, bundle([post(patient(identifier=(SYS, "patch-2"))),
                                      patch_entry(f"Patient/{pid}", bad)]))
    assert_failed(resp, entry_index=1, statuses=(400, 422))
    assert await total(client, "Patient", {"identifier": f"{SYS}|patch-2"}) == 0
    assert (await read(client, f"Patient/{pid}"))["meta"]["versionId"] == "2"


async def test_conditional_update_and_delete_entries(client: httpx.AsyncClient) -> None:
    upd = await created(client, patient(identifier=(SYS, "cu-1")))
    gone = await created(client, patient(identifier=(SYS, "cd-1")))
    sent = bundle([put(f"Patient?identifier={SYS}|cu-1",
                       patient(identifier=(SYS, "cu-1"), family="Updated")),
                   put(f"Patient?identifier={SYS}|cu-new", patient(identifier=(SYS, "cu-new"))),
                   delete(f"Patient?identifier={SYS}|cd-1")])
    entries = response_entries(await send(client, sent), "transaction")
    assert status_code(entries[0]) == 200 and location(entries[0])[1:] == (upd["id"], "2")
    assert status_code(entries[1]) == 201
    assert status_code(entries[2]) in (200, 204)
    assert (await read(client, f"Patient/{upd['id']}"))["name"][0]["family"] == "Updated"
    assert (await client.get(f"Patient/{gone['id']}")).status_code == 410
    assert await total(client, "Patient", {"identifier": f"{SYS}|cu-new"}) == 1


async def test_overlapping_identities_fail(client: httpx.AsyncClient) -> None:
    # http.html#trules: identities that overlap in steps 1-3 make the transaction fail.
    sent = bundle([put("Patient/dup-1", patient(id_="dup-1", family="One")),
                   put("Patient/dup-1", patient(id_="dup-1", family="Two"))])
    resp = await send(client, sent)
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Patient/dup-1")).status_code == 404


# -- conditional references ----------------------------------------------------------------


async def test_conditional_reference_resolved(client: httpx.AsyncClient) -> None:
    pid = (await created(client, patient(identifier=(SYS, "cr-1"))))["id"]
    cond_ref = f"Patient?identifier={SYS}|cr-1"
    enc = encounter(cond_ref, extension=[
        {"url": "http://example.org/fhir/StructureDefinition/guarantor",
         "valueReference": {"reference": cond_ref}}])
    entries = response_entries(await send(client, bundle([post(enc)])), "transaction")
    got = await read(client, reference_of(entries[0]))
    assert got["subject"]["reference"] == f"Patient/{pid}"
    assert got["extension"][0]["valueReference"]["reference"] == f"Patient/{pid}"
    assert await total(client, "Encounter", {"subject": f"Patient/{pid}"}) == 1


async def test_conditional_reference_without_match_fails(client: httpx.AsyncClient) -> None:
    sent = bundle([post(patient(identifier=(SYS, "cr-fresh"))),
                   post(encounter(f"Patient?identifier={SYS}|nobody"))])
    assert_failed(await send(client, sent), entry_index=1)
    assert await total(client, "Patient") == 0
    assert await total(client, "Encounter") == 0
    assert await history_total(client) == 0


async def test_conditional_reference_with_two_matches_fails(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        await created(client, patient(identifier=(SYS, "cr-2")))
    before = await history_total(client)
    sent = bundle([post(observation(tag="cr-2")),
                   post(encounter(f"Patient?identifier={SYS}|cr-2"))])
    assert_failed(await send(client, sent), entry_index=1)
    assert await total(client, "Observation") == 0
    assert await total(client, "Encounter") == 0
    assert await history_total(client) == before


# -- ifNoneExist, ifMatch, ifNoneMatch, ifModifiedSince -----------------------------------


async def test_if_none_exist_match_returns_existing(client: httpx.AsyncClient) -> None:
    pid = (await created(client, patient(identifier=(SYS, "ine-1"))))["id"]
    full = urn()
    sent = bundle([post(patient(identifier=(SYS, "ine-1"), family="Duplicate"), full,
                        if_none_exist=f"identifier={SYS}|ine-1"),
                   post(encounter(full)),
                   post(patient(identifier=(SYS, "ine-2")),
                        if_none_exist=f"identifier={SYS}|ine-2")])
    entries = response_entries(await send(client, sent), "transaction")
    assert status_code(entries[0]) == 200, entries[0]
    assert location(entries[0])[:2] == ("Patient", pid)
    assert status_code(entries[1]) == 201
    assert status_code(entries[2]) == 201
    # The fullUrl of the conditional create stands for the resource it matched.
    got = await read(client, reference_of(entries[1]))
    assert got["subject"]["reference"] == f"Patient/{pid}"
    assert await total(client, "Patient", {"identifier": f"{SYS}|ine-1"}) == 1
    assert (await read(client, f"Patient/{pid}"))["name"][0]["family"] == "Chalmers"
    assert (await read(client, f"Patient/{pid}"))["meta"]["versionId"] == "1"


async def test_if_none_exist_with_several_matches_fails(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        await created(client, patient(identifier=(SYS, "ine-many")))
    sent = bundle([post(observation(tag="ine")),
                   post(patient(identifier=(SYS, "ine-many")),
                        if_none_exist=f"identifier={SYS}|ine-many")])
    assert_failed(await send(client, sent), entry_index=1, statuses=(412,))
    assert await total(client, "Observation") == 0
    assert await total(client, "Patient") == 2


async def test_stale_if_match_fails_with_412_and_writes_nothing(client: httpx.AsyncClient) -> None:
    first = await created(client, patient(identifier=(SYS, "im-1")))
    pid = first["id"]
    resp = await client.put(f"Patient/{pid}", json={**without_meta(first), "gender": "other"})
    assert resp.status_code == 200
    before = await history_total(client)
    sent = bundle([post(observation(f"Patient/{pid}", tag="im")),
                   put(f"Patient/{pid}", {**without_meta(first), "gender": "female"},
                       if_match='W/"1"')])
    assert_failed(await send(client, sent), entry_index=1, statuses=(412,))
    assert await total(client, "Observation") == 0
    current = await read(client, f"Patient/{pid}")
    assert current["meta"]["versionId"] == "2" and current["gender"] == "other"
    assert await history_total(client, f"Patient/{pid}/_history") == 2
    assert await history_total(client) == before

    fresh = bundle([put(f"Patient/{pid}", {**without_meta(first), "gender": "female"},
                        if_match='W/"2"')])
    entries = response_entries(await send(client, fresh), "transaction")
    assert location(entries[0])[1:] == (pid, "3")


async def test_batch_get_with_if_none_match(client: httpx.AsyncClient) -> None:
    pid = (await created(client, patient()))["id"]
    sent = bundle([get(f"Patient/{pid}", ifNoneMatch='W/"1"'),
                   get(f"Patient/{pid}", ifNoneMatch='W/"0"')], "batch")
    entries = response_entries(await send(client, sent), "batch")
    assert [status_code(e) for e in entries] == [304, 200]
    assert entries[1]["resource"]["id"] == pid


async def test_batch_get_with_if_modified_since(client: httpx.AsyncClient) -> None:
    made = await created(client, patient())
    pid = made["id"]
    last = datetime.fromisoformat(made["meta"]["lastUpdated"].replace("Z", "+00:00"))
    await asyncio.sleep(1.5)  # so that lastUpdated + 1 s is not a date in the future
    later = (last + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sent = bundle([get(f"Patient/{pid}", ifModifiedSince=later),
                   get(f"Patient/{pid}", ifModifiedSince="2000-01-01T00:00:00Z")], "batch")
    entries = response_entries(await send(client, sent), "batch")
    assert [status_code(e) for e in entries] == [304, 200]
    assert entries[1]["resource"]["id"] == pid


# -- all or nothing, batch independence, size limit ----------------------------------------


async def test_transaction_is_all_or_nothing(client: httpx.AsyncClient) -> None:
    a = await created(client, patient(identifier=(SYS, "aon-a")))
    b = await created(client, patient(identifier=(SYS, "aon-b")))
    before = await history_total(client)
    new = urn()
    sent = bundle([
        post(patient(identifier=(SYS, "aon-new")), new),
        post(encounter(new)),
        put(f"Patient/{a['id']}", {**without_meta(a), "gender": "female"}),
        put("Patient/aon-client-id", patient(id_="aon-client-id", identifier=(SYS, "aon-c"))),
        delete(f"Patient/{b['id']}"),
        post(invalid_observation(new)),
    ])
    assert_failed(await send(client, sent), entry_index=5, statuses=(400, 422))

    assert await total(client, "Patient", {"identifier": f"{SYS}|aon-new"}) == 0
    assert await total(client, "Patient", {"identifier": f"{SYS}|aon-c"}) == 0
    assert await total(client, "Patient") == 2
    assert await total(client, "Encounter") == 0
    assert await total(client, "Observation") == 0
    got_a = await read(client, f"Patient/{a['id']}")
    assert got_a["meta"]["versionId"] == "1" and got_a["gender"] == "male"
    assert await history_total(client, f"Patient/{a['id']}/_history") == 1
    assert (await read(client, f"Patient/{b['id']}"))["meta"]["versionId"] == "1"
    assert (await client.get("Patient/aon-client-id")).status_code == 404
    assert await history_total(client, "Encounter/_history") == 0
    assert await history_total(client) == before


async def test_failing_first_entry_names_entry_zero(client: httpx.AsyncClient) -> None:
    sent = bundle([post(invalid_observation()), post(patient(identifier=(SYS, "f0")))])
    body = assert_failed(await send(client, sent), entry_index=0, statuses=(400, 422))
    assert "entry[1]" not in outcome_text(body)
    assert await history_total(client) == 0


async def test_entry_without_request_fails(client: httpx.AsyncClient) -> None:
    # bdl-3: every entry of a transaction or batch has a request (method and url).
    sent = bundle([post(patient(identifier=(SYS, "nr-1"))), {"resource": patient()}])
    assert_failed(await send(client, sent), entry_index=1, statuses=(400, 422))
    assert await history_total(client) == 0
    sent = bundle([post(patient(identifier=(SYS, "nr-2"))),
                   {"resource": patient(), "request": {"url": "Patient"}}], "batch")
    resp = await send(client, sent)
    if resp.status_code == 200:
        entries = response_entries(resp, "batch")
        assert status_code(entries[0]) == 201
        assert 400 <= status_code(entries[1]) < 500
    else:  # a batch that is not well formed may be refused as a whole
        assert resp.status_code in (400, 422), resp.text


async def test_batch_entries_are_independent(client: httpx.AsyncClient) -> None:
    existing = await created(client, patient(identifier=(SYS, "b-existing")))
    pid = existing["id"]
    sent = bundle([
        post(patient(identifier=(SYS, "b-ok"))),
        post(invalid_observation()),
        put("Patient/batch-put", patient(id_="batch-put")),
        get("Patient/no-such-patient"),
        put(f"Patient/{pid}", {**without_meta(existing), "gender": "female"}, if_match='W/"9"'),
        get(f"Patient/{pid}"),
        post(observation(f"Patient/{pid}")),
    ], "batch")
    entries = response_entries(await send(client, sent), "batch")
    assert len(entries) == 7
    codes = [status_code(e) for e in entries]
    assert codes[0] == 201
    assert codes[1] in (400, 422)
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert codes[2] == 201 and location(entries[2])[:2] == ("Patient", "batch-put")
    assert codes[3] == 404
    assert codes[4] == 412
    assert codes[5] == 200 and entries[5]["resource"]["id"] == pid
    assert codes[6] == 201
    for i in (3, 4):
        if "outcome" in entries[i]["response"]:
            assert entries[i]["response"]["outcome"]["resourceType"] == "OperationOutcome"

    assert await total(client, "Patient", {"identifier": f"{SYS}|b-ok"}) == 1
    assert (await client.get("Patient/batch-put")).status_code == 200
    assert await total(client, "Observation") == 1
    assert (await read(client, f"Patient/{pid}"))["meta"]["versionId"] == "1"


@pytest.mark.parametrize("settings_overrides", [{"fhir_bundle_max_entries": 3}])
async def test_bundle_size_limit(client: httpx.AsyncClient) -> None:
    for kind in ("transaction", "batch"):
        too_many = bundle([post(patient(identifier=(SYS, f"big-{i}"))) for i in range(4)], kind)
        resp = await send(client, too_many)
        assert resp.status_code == 413, resp.text
        assert resp.json()["resourceType"] == "OperationOutcome"
    assert await total(client, "Patient") == 0
    at_limit = bundle([post(patient(identifier=(SYS, f"ok-{i}"))) for i in range(3)])
    entries = response_entries(await send(client, at_limit), "transaction")
    assert [status_code(e) for e in entries] == [201, 201, 201]


def test_bundle_size_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_BUNDLE_MAX_ENTRIES", raising=False)
    assert Settings().fhir_bundle_max_entries == 10_000  # type: ignore[attr-defined]
    monkeypatch.setenv("FHIR_BUNDLE_MAX_ENTRIES", "25")
    assert Settings().fhir_bundle_max_entries == 25  # type: ignore[attr-defined]


# -- concurrency ---------------------------------------------------------------------------


async def test_concurrent_transactions_with_same_if_match_one_wins(
        client: httpx.AsyncClient) -> None:
    first = await created(client, patient(identifier=(SYS, "conc-1")))
    pid = first["id"]
    n = 6

    def txn(k: int) -> dict[str, Any]:
        return bundle([post(observation(f"Patient/{pid}", tag=f"conc-{k}")),
                       put(f"Patient/{pid}", {**without_meta(first), "gender": "female",
                                              "name": [{"family": f"Winner{k}"}]},
                           if_match='W/"1"')])

    results = await asyncio.gather(*(send(client, txn(k)) for k in range(n)))
    codes = [r.status_code for r in results]
    winners = [k for k, c in enumerate(codes) if c == 200]
    assert len(winners) == 1, codes
    assert all(c in (409, 412) for c in codes if c != 200), codes
    for r in results:
        if r.status_code != 200:
            assert r.json()["resourceType"] == "OperationOutcome"
    k = winners[0]
    current = await read(client, f"Patient/{pid}")
    assert current["meta"]["versionId"] == "2"
    assert current["name"][0]["family"] == f"Winner{k}"
    assert await history_total(client, f"Patient/{pid}/_history") == 2
    assert await total(client, "Observation") == 1
    assert await total(client, "Observation", {"_tag": f"{TAGS}|conc-{k}"}) == 1


async def test_concurrent_transactions_do_not_lose_updates(client: httpx.AsyncClient) -> None:
    first = await created(client, patient(identifier=(SYS, "conc-2")))
    pid = first["id"]
    n = 6

    def txn(k: int) -> dict[str, Any]:
        return bundle([post(observation(f"Patient/{pid}", tag=f"lu-{k}")),
                       put(f"Patient/{pid}", {**without_meta(first),
                                              "name": [{"family": f"Writer{k}"}]})])

    results = await asyncio.gather(*(send(client, txn(k)) for k in range(n)))
    codes = [r.status_code for r in results]
    assert all(c in (200, 409, 412) for c in codes), codes
    won = [k for k, c in enumerate(codes) if c == 200]
    assert won, codes
    versions = sorted(int(location(response_entries(results[k], "transaction")[1])[2])
                      for k in won)
    assert versions == list(range(2, 2 + len(won)))
    current = await read(client, f"Patient/{pid}")
    assert current["meta"]["versionId"] == str(1 + len(won))
    assert await history_total(client, f"Patient/{pid}/_history") == 1 + len(won)
    for k in range(n):
        expected = 1 if k in won else 0
        assert await total(client, "Observation", {"_tag": f"{TAGS}|lu-{k}"}) == expected, k
