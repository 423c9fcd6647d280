"""What a ``patient/*.rs`` token sees of every served type, from the one table
(``fhir_server/auth/patient_visibility.py``): its own resources of the compartment and of
the attributed types, never another patient's nor an unattributable one, public reference
data whole, nothing of the other types. The types come from the CapabilityStatement; the
expectations from the table and from what the test created."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from fhir_server.auth.patient_visibility import (
    Visibility,
    attribution_paths,
    visibility,
)
from fhir_server.core.models import resource_types
from fhir_server.search.registry import lookup
from tests.auth.world import created, ids
from tests.support.store import ClientFor

Resource = dict[str, Any]
MONEY = {"value": 25, "currency": "USD"}


@dataclass
class Owner:
    """One patient's resources that attributed resources point at (None: no patient)."""

    patient: str | None = None
    invoice: str | None = None
    document: str | None = None
    device: str | None = None
    enrollment: str | None = None


def _ref(type_: str, id_: str | None) -> dict[str, Any]:
    return {"reference": f"{type_}/{id_}"} if id_ else {}


def _only(**fields: Any) -> Resource:
    return {k: v for k, v in fields.items() if v}


# One instance of each attributed type, made the patient's by the owner's resources (an
# unattributable one for an Owner() without any).
BUILD: dict[str, Callable[[Owner], Resource]] = {
    "Binary": lambda o: _only(resourceType="Binary", contentType="text/plain", data="aGk=",
                              securityContext=_ref("DocumentReference", o.document)),
    "Contract": lambda o: _only(resourceType="Contract", status="executed",
                                subject=[_ref("Patient", o.patient)] if o.patient else None),
    "Device": lambda o: _only(resourceType="Device", patient=_ref("Patient", o.patient)),
    "DeviceMetric": lambda o: _only(resourceType="DeviceMetric", type={"text": "pulse"},
                                    category="measurement", source=_ref("Device", o.device)),
    "EnrollmentResponse": lambda o: _only(resourceType="EnrollmentResponse", status="active",
                                          request=_ref("EnrollmentRequest", o.enrollment)),
    "GuidanceResponse": lambda o: _only(resourceType="GuidanceResponse",
                                        moduleUri="http://clinic.example/rules",
                                        status="success", subject=_ref("Patient", o.patient)),
    "PaymentNotice": lambda o: _only(resourceType="PaymentNotice", status="active",
                                     created="2024-03-01", payment={"display": "check"},
                                     recipient={"display": "Clinic"}, amount=MONEY,
                                     request=_ref("Invoice", o.invoice)),
    "PaymentReconciliation": lambda o: _only(
        resourceType="PaymentReconciliation", status="active", created="2024-03-01",
        paymentDate="2024-03-01", paymentAmount=MONEY,
        detail=[{"type": {"text": "payment"}, "request": _ref("Invoice", o.invoice),
                 "amount": MONEY}] if o.invoice else None),
}


OWNED = {"Patient": "patient", "Invoice": "invoice", "DocumentReference": "document",
         "EnrollmentRequest": "enrollment"}  # compartment types: Owner's field


@dataclass
class Data:
    owners: dict[str, Owner] = field(default_factory=dict)  # "a", "b"
    attributed: dict[str, dict[str, str]] = field(default_factory=dict)  # type -> key -> id
    public: dict[str, str] = field(default_factory=dict)  # type -> id
    hidden: dict[str, str] = field(default_factory=dict)


async def _owner(client: httpx.AsyncClient, name: str) -> Owner:
    pid = await created(client, {"resourceType": "Patient", "name": [{"family": name}]})
    return Owner(
        patient=pid,
        invoice=await created(client, {"resourceType": "Invoice", "status": "issued",
                                       "subject": _ref("Patient", pid)}),
        document=await created(client, {
            "resourceType": "DocumentReference", "status": "current",
            "subject": _ref("Patient", pid),
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]}),
        device=await created(client, {"resourceType": "Device", "patient": _ref("Patient", pid)}),
        enrollment=await created(client, {"resourceType": "EnrollmentRequest",
                                          "status": "active",
                                          "candidate": _ref("Patient", pid)}))


@pytest.fixture
async def data(client: httpx.AsyncClient) -> Data:
    d = Data(owners={"a": await _owner(client, "Able"), "b": await _owner(client, "Baker")})
    for type_, build in BUILD.items():
        d.attributed[type_] = {key: await created(client, build(owner))
                               for key, owner in (*d.owners.items(), ("none", Owner()))}
    d.public["Organization"] = await created(client, {"resourceType": "Organization",
                                                      "name": "Clinic"})
    pract = await created(client, {"resourceType": "Practitioner", "name": [{"family": "Welby"}]})
    d.public["Practitioner"] = pract
    d.public["Location"] = await created(client, {"resourceType": "Location", "name": "Room 1"})
    schedule = await created(client, {"resourceType": "Schedule",
                                      "actor": [_ref("Practitioner", pract)]})
    d.public["Slot"] = await created(client, {
        "resourceType": "Slot", "schedule": _ref("Schedule", schedule), "status": "free",
        "start": "2024-03-01T09:00:00Z", "end": "2024-03-01T09:30:00Z"})
    d.hidden["Endpoint"] = await created(client, {
        "resourceType": "Endpoint", "status": "active",
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-"
                                     "connection-type", "code": "hl7-fhir-rest"},
        "payloadType": [{"text": "claims"}], "address": "https://payer.example/fhir"})
    return d


@pytest.fixture
async def pa(client_for: ClientFor, data: Data) -> httpx.AsyncClient:
    return await client_for("patient/*.rs", patient=data.owners["a"].patient)


def test_table_paths_are_search_parameters() -> None:
    """Every attribution path is a reference parameter of its type that may name its
    target, and every attributed type has a test instance (BUILD)."""
    attributed = set()
    for type_ in (t for t in _all_types() if visibility(t) is Visibility.ATTRIBUTED):
        attributed.add(type_)
        for param, target in attribution_paths(type_):
            found = lookup(type_, param)
            assert found is not None and found.type == "reference", (type_, param)
            assert not found.target or target in found.target, (type_, param, target)
            assert visibility(target) in (Visibility.COMPARTMENT, Visibility.ATTRIBUTED)
    assert attributed == set(BUILD)


def _all_types() -> list[str]:
    return list(resource_types())


async def test_every_served_type(pa: httpx.AsyncClient, client: httpx.AsyncClient,
                                 data: Data) -> None:
    meta = (await client.get("metadata")).json()
    types = sorted(r["type"] for r in meta["rest"][0]["resource"])
    assert "PaymentReconciliation" in types and "Binary" in types
    for type_ in types:
        seen = visibility(type_)
        resp = await pa.get(type_, params={"_count": "100"})
        if type_ == "AuditEvent" or seen is Visibility.HIDDEN:
            # AuditEvent: never through patient/ scopes (the audit rule).
            assert resp.status_code == 403, type_
            continue
        assert resp.status_code == 200, (type_, resp.text[:300])
        found = ids(resp.json())
        if seen is Visibility.PUBLIC:
            everything = ids((await client.get(type_, params={"_count": "100"})).json())
            assert found == everything, type_
        elif seen is Visibility.ATTRIBUTED:
            mine = data.attributed[type_]
            extra = ({f"Device/{data.owners['a'].device}"} if type_ == "Device" else set())
            assert found == {f"{type_}/{mine['a']}"} | extra, type_
            assert resp.json()["total"] == len(found)
        elif type_ in OWNED:  # the compartment: a's own, never b's
            assert found == {f"{type_}/{getattr(data.owners['a'], OWNED[type_])}"}, type_


async def test_reads_of_attributed_public_and_hidden(pa: httpx.AsyncClient,
                                                     data: Data) -> None:
    absent = await pa.get("PaymentReconciliation/no-such-id")
    assert absent.status_code == 404
    for type_, by_key in data.attributed.items():
        for key, id_ in by_key.items():
            resp = await pa.get(f"{type_}/{id_}")
            assert resp.status_code == (200 if key == "a" else 404), (type_, key)
            if key != "a":  # the answer of an id that does not exist
                assert resp.json()["issue"][0]["code"] == absent.json()["issue"][0]["code"]
    for type_, id_ in data.public.items():
        assert (await pa.get(f"{type_}/{id_}")).status_code == 200, type_
    for type_, id_ in data.hidden.items():
        assert (await pa.get(f"{type_}/{id_}")).status_code == 403, type_


async def test_history_and_chains_stay_confined(pa: httpx.AsyncClient, data: Data) -> None:
    others = {f"{t}/{i}" for t, by_key in data.attributed.items()
              for k, i in by_key.items() if k != "a"}
    mine = {f"{t}/{by_key['a']}" for t, by_key in data.attributed.items()}
    refs: set[str] = set()
    url: str | None = "_history?_count=10"
    while url:
        page = (await pa.get(url)).json()
        refs |= {e["fullUrl"].split("/fhir/", 1)[1] for e in page.get("entry", [])}
        url = next((link["url"].split("/fhir/", 1)[1] for link in page.get("link", [])
                    if link["relation"] == "next"), None)
    assert mine <= refs and not refs & others
    assert f"Endpoint/{data.hidden['Endpoint']}" not in refs
    typed = (await pa.get("PaymentReconciliation/_history")).json()
    assert {e["fullUrl"].split("/fhir/", 1)[1] for e in typed["entry"]} == {
        f"PaymentReconciliation/{data.attributed['PaymentReconciliation']['a']}"}
    b_invoice = data.owners["b"].invoice
    chained = (await pa.get("PaymentReconciliation", params={
        "detail-request": f"Invoice/{b_invoice}"})).json()
    assert chained["total"] == 0
    counted = (await pa.get("PaymentReconciliation", params={"_summary": "count"})).json()
    assert counted["total"] == 1
    rev = (await pa.get("Invoice", params={
        "_revinclude": "PaymentReconciliation:detail-request"})).json()
    assert ids(rev, "include") == {
        f"PaymentReconciliation/{data.attributed['PaymentReconciliation']['a']}"}


async def test_compartment_types_named_through_other_elements(
        pa: httpx.AsyncClient, client: httpx.AsyncClient, data: Data) -> None:
    """Task.for, a Communication's recipient and an X12 interchange's DocumentReference put
    a resource in a patient's compartment or, without a subject, in nobody's."""
    a, b = (f"Patient/{data.owners[k].patient}" for k in ("a", "b"))
    made: dict[str, dict[str, str]] = {"Task": {}, "Communication": {}, "DocumentReference": {}}
    for key, patient in (("a", a), ("b", b)):
        made["Task"][key] = await created(client, {
            "resourceType": "Task", "status": "requested", "intent": "order",
            "for": {"reference": patient}})
        made["Communication"][key] = await created(client, {
            "resourceType": "Communication", "status": "completed",
            "recipient": [{"reference": patient}]})
    # An 835's interchange: related to a's Invoice, but about many patients (no subject).
    made["DocumentReference"]["none"] = await created(client, {
        "resourceType": "DocumentReference", "status": "current",
        "context": {"related": [{"reference": f"Invoice/{data.owners['a'].invoice}"}]},
        "content": [{"attachment": {"contentType": "application/edi-x12", "data": "aGk="}}]})
    for type_, by_key in made.items():
        for key, id_ in by_key.items():
            resp = await pa.get(f"{type_}/{id_}")
            assert resp.status_code == (200 if key == "a" else 404), (type_, key)
        found = ids((await pa.get(type_)).json())
        assert not {f"{type_}/{i}" for k, i in by_key.items() if k != "a"} & found, type_
