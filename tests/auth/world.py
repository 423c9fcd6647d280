"""Two patients' worth of data, created through the API with the admin client, for the
scope and compartment tests. Expected answers are computed from what was created."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

FHIR_JSON = {"Content-Type": "application/fhir+json"}
IDS = "http://clinic.example/ids"
LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass
class World:
    patients: dict[str, str] = field(default_factory=dict)  # key -> id
    family: dict[str, str] = field(default_factory=dict)  # key -> family name
    observations: dict[str, list[str]] = field(default_factory=dict)  # patient key -> ids
    encounters: dict[str, str] = field(default_factory=dict)
    obs_identifier: dict[str, str] = field(default_factory=dict)  # obs id -> identifier value
    obs_category: dict[str, str] = field(default_factory=dict)  # obs id -> category code
    practitioner: str = ""
    organization: str = ""

    def owner_of(self, obs_id: str) -> str:
        return next(k for k, ids in self.observations.items() if obs_id in ids)


async def created(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    resp = await client.post(resource["resourceType"], json=resource, headers=FHIR_JSON)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def observation(patient_id: str, *, encounter: str | None = None, performer: str | None = None,
                category: str = "laboratory", code: str = "2345-7",
                identifier: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": 5, "unit": "mmol/L"},
        "identifier": [{"system": IDS, "value": identifier or uuid.uuid4().hex}],
    }
    if encounter:
        res["encounter"] = {"reference": f"Encounter/{encounter}"}
    if performer:
        res["performer"] = [{"reference": f"Practitioner/{performer}"}]
    return res


async def build(client: httpx.AsyncClient) -> World:
    """Patients a and b, each with an Encounter and two Observations (laboratory and
    vital-signs) performed by one shared Practitioner; one Organization."""
    w = World()
    w.organization = await created(client, {"resourceType": "Organization", "name": "Clinic"})
    w.practitioner = await created(client, {"resourceType": "Practitioner",
                                            "name": [{"family": "Welby"}]})
    for key in ("a", "b"):
        family = f"Fam{key.upper()}{uuid.uuid4().hex[:8]}"
        w.family[key] = family
        pid = await created(client, {
            "resourceType": "Patient", "name": [{"family": family}],
            "managingOrganization": {"reference": f"Organization/{w.organization}"}})
        w.patients[key] = pid
        w.encounters[key] = await created(client, {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "AMB"},
            "subject": {"reference": f"Patient/{pid}"}})
        w.observations[key] = []
        for category in ("laboratory", "vital-signs"):
            ident = uuid.uuid4().hex
            oid = await created(client, observation(
                pid, encounter=w.encounters[key], performer=w.practitioner, category=category,
                identifier=ident))
            w.observations[key].append(oid)
            w.obs_identifier[oid] = ident
            w.obs_category[oid] = category
    return w


def ids(bundle: dict[str, Any], mode: str | None = "match") -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", [])
            if "resource" in e and (mode is None or e.get("search", {}).get("mode") == mode)}
