"""A write entry's request.url names what it writes (FHIR R4 http.html#transaction): ``Type``
for POST, ``Type/id`` or ``Type?criteria`` for PUT, PATCH and DELETE. A longer URL is
refused, in a transaction (nothing written) and in a batch (that entry only)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.bundles.helpers import (
    assert_failed,
    bundle,
    delete,
    patch_entry,
    post,
    put,
    response_entries,
    send,
    status_code,
    total,
)
from tests.factories import patient

RENAME = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
    {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.gender"},
    {"name": "value", "valueCode": "other"}]}]}


def long_urls(id_: str) -> list[tuple[str, dict[str, Any]]]:
    """(what it is, a write entry whose URL has more path segments than its method takes)."""
    return [
        ("PUT with a path after the id", put(f"Patient/{id_}/extra", patient(id_=id_))),
        ("PUT with a dot-dot segment", put(f"Patient/../{id_}", patient())),
        ("PUT to a version", put(f"Patient/{id_}/_history/1", patient(id_=id_))),
        ("POST to an instance", post(patient(), url=f"Patient/{id_}")),
        ("POST to an operation", post(patient(), url="Patient/$validate")),
        ("DELETE of a version", delete(f"Patient/{id_}/_history/1")),
        ("PATCH with a path after the id", patch_entry(f"Patient/{id_}/x", RENAME)),
    ]


@pytest.mark.parametrize("case", range(len(long_urls("x"))))
async def test_transaction_refuses_a_write_url_longer_than_its_method_takes(
        client: httpx.AsyncClient, case: int) -> None:
    created = await client.post("Patient", json=patient())
    assert created.status_code == 201, created.text
    id_ = created.json()["id"]
    before = await total(client, "Patient")
    what, entry = long_urls(id_)[case]
    resp = await send(client, bundle([post(patient()), entry]))
    body = assert_failed(resp, entry_index=1, statuses=(400,))
    assert "request.url" in str(body["issue"][0].get("expression")), (what, body)
    assert await total(client, "Patient") == before, what  # nothing of it was written
    again = await client.get(f"Patient/{id_}")
    assert again.status_code == 200 and again.json()["meta"]["versionId"] == "1", what


async def test_batch_refuses_only_the_entries_with_a_long_url(client: httpx.AsyncClient) -> None:
    created = await client.post("Patient", json=patient())
    id_ = created.json()["id"]
    cases = long_urls(id_)
    resp = await send(client, bundle([post(patient()), *[e for _, e in cases],
                                      put(f"Patient/{id_}", patient(id_=id_, gender="other"))],
                                     type_="batch"))
    entries = response_entries(resp, "batch")
    assert status_code(entries[0]) == 201
    for (what, _), entry in zip(cases, entries[1:-1], strict=True):
        assert status_code(entry) == 400, (what, entry)
        assert "request.url" in str(entry["response"]["outcome"]), (what, entry)
    assert status_code(entries[-1]) == 200  # a well-formed update after them still runs
    read = (await client.get(f"Patient/{id_}")).json()
    assert read["gender"] == "other" and read["meta"]["versionId"] == "2"
