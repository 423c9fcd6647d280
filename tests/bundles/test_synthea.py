"""The Synthea Bundles posted as transactions: urn:uuid references rewritten, counts exact.

The files are ``batch`` Bundles of ``POST`` entries with ``urn:uuid`` fullUrls
(no conditional URLs, no ifNoneExist); each patient Bundle carries its own
Organizations and Practitioners. Posted as transactions every entry is created,
so the expected counts are the entry counts of the files.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from fhir_server.main import create_app
from tests.bundles.helpers import (
    history_total,
    location,
    reference_of,
    references,
    response_entries,
    rewrite,
    send,
    status_code,
    strings,
    total,
)
from tests.support.store import StoreFactory, fhir_client, make_settings, mint
from tools.data_sets import SYNTHEA_BUNDLES as SYNTHEA

# The hospital and practitioner Bundles first, then the patients.
FILES = sorted(SYNTHEA.glob("*.json"), key=lambda p: ("Information" not in p.name, p.name))
# Per resource type, the element that points at the patient and the search parameter on it.
PATIENT_LINK = {
    "Encounter": ("subject", "subject"), "Condition": ("subject", "subject"),
    "Observation": ("subject", "subject"), "Procedure": ("subject", "subject"),
    "DiagnosticReport": ("subject", "subject"), "CareTeam": ("subject", "subject"),
    "CarePlan": ("subject", "subject"), "Immunization": ("patient", "patient"),
    "Claim": ("patient", "patient"), "ExplanationOfBenefit": ("patient", "patient"),
}


@dataclass
class Posted:
    name: str
    sent: dict[str, Any]
    response: httpx.Response
    refs: dict[str, str] = field(default_factory=dict)  # fullUrl -> Type/id

    @property
    def patient_full_url(self) -> str | None:
        return next((e["fullUrl"] for e in self.sent["entry"]
                     if e["resource"]["resourceType"] == "Patient"), None)


@dataclass
class Loaded:
    client: httpx.AsyncClient
    posted: list[Posted]

    def by_name(self, name: str) -> Posted:
        return next(p for p in self.posted if p.name == name)


@pytest.fixture(scope="module")
async def synthea(new_store: StoreFactory) -> AsyncIterator[Loaded]:
    """All twelve Bundles posted as transactions into one database, once for this module."""
    store = new_store()
    app = create_app(make_settings(store))
    try:
        async with (app.router.lifespan_context(app),
                    fhir_client(app, await mint(app), timeout=600) as http):
            posted = []
            for path in FILES:
                sent = json.loads(path.read_text())
                sent["type"] = "transaction"
                resp = await send(http, sent)
                item = Posted(path.name, sent, resp)
                if resp.status_code == 200:
                    entries = resp.json().get("entry", [])
                    if len(entries) == len(sent["entry"]):
                        item.refs = {e["fullUrl"]: reference_of(r)
                                     for e, r in zip(sent["entry"], entries, strict=True)
                                     if "location" in r.get("response", {})}
                posted.append(item)
            yield Loaded(http, posted)
    finally:
        await store.drop()


def test_the_files_are_what_the_tests_assume() -> None:
    assert len(FILES) == 12
    for path in FILES:
        sent = json.loads(path.read_text())
        full_urls = {e["fullUrl"] for e in sent["entry"]}
        for e in sent["entry"]:
            assert e["fullUrl"].startswith("urn:uuid:")
            assert e["request"] == {"method": "POST", "url": e["resource"]["resourceType"]}
            for _, ref in references(e["resource"]):
                assert ref.startswith("#") or ref in full_urls, (path.name, ref)


async def test_every_bundle_is_committed(synthea: Loaded) -> None:
    for item in synthea.posted:
        entries = response_entries(item.response, "transaction")
        assert len(entries) == len(item.sent["entry"]), item.name
        for i, (req, res) in enumerate(zip(item.sent["entry"], entries, strict=True)):
            assert status_code(res) == 201, (item.name, i, res["response"])
            type_, _, version = location(res)
            assert type_ == req["resource"]["resourceType"], (item.name, i)
            assert version == "1"
            assert res["response"]["etag"] == 'W/"1"'
            assert res["response"].get("lastModified")
        assert len(set(item.refs.values())) == len(entries), item.name


async def test_counts_per_resource_type(synthea: Loaded) -> None:
    expected: Counter[str] = Counter(e["resource"]["resourceType"]
                                     for item in synthea.posted for e in item.sent["entry"])
    got = {type_: await total(synthea.client, type_) for type_ in expected}
    assert got == dict(expected)
    assert await history_total(synthea.client) == sum(expected.values())


async def test_counts_per_patient(synthea: Loaded) -> None:
    patients = [item for item in synthea.posted if item.patient_full_url]
    assert len(patients) == 10
    for item in patients:
        full = item.patient_full_url
        assert full is not None
        pid = item.refs[full]
        for type_, (element, param) in PATIENT_LINK.items():
            expected = sum(1 for e in item.sent["entry"]
                           if e["resource"]["resourceType"] == type_
                           and e["resource"].get(element, {}).get("reference") == full)
            got = await total(synthea.client, type_, {param: pid})
            assert got == expected, (item.name, type_, got, expected)
        assert await total(synthea.client, f"Patient/{pid.split('/')[1]}/Encounter") == sum(
            1 for e in item.sent["entry"] if e["resource"]["resourceType"] == "Encounter")


@pytest.mark.parametrize("name", [p.name for p in FILES])
async def test_references_rewritten(synthea: Loaded, name: str) -> None:
    item = synthea.by_name(name)
    assert item.refs, f"{name} was not committed"
    targets = set(item.refs.values())
    for entry in item.sent["entry"]:
        ref = item.refs[entry["fullUrl"]]
        resp = await synthea.client.get(ref)
        assert resp.status_code == 200, (ref, resp.status_code)
        served = resp.json()
        assert served["id"] == ref.split("/")[1]
        leftovers = [(p, s) for p, s in strings(served) if s.startswith("urn:uuid:")]
        assert not leftovers, (ref, leftovers[:5])
        for path, value in references(served):
            if value.startswith("#"):
                continue
            assert value in targets, (ref, path, value)
        # The resource is the one sent, with exactly its references rewritten.
        sent = {k: v for k, v in entry["resource"].items() if k not in ("id", "meta")}
        assert {k: v for k, v in served.items() if k not in ("id", "meta")} == \
            rewrite(sent, item.refs), ref
        # Contained references (#...) are left as they were.
        sent_local = sorted(v for _, v in references(entry["resource"]) if v.startswith("#"))
        assert sorted(v for _, v in references(served) if v.startswith("#")) == sent_local
