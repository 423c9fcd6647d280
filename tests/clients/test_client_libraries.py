"""Real FHIR client libraries drive a server process: fhirclient (sync) and fhirpy (async)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.patient import Patient as SmartPatient
from fhirclient.server import FHIRNotFoundException
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from tests.support.store import HTTP_TIMEOUT

MRN = "http://clinic.example/mrn"


def _smart_crud(base: str, headers: dict[str, str]) -> None:
    smart = smart_client.FHIRClient(settings={"app_id": "rcm-tests", "api_base": base + "/"})
    smart.server.session.headers["Authorization"] = headers["Authorization"]
    patient = SmartPatient()
    name = HumanName()
    name.family, name.given = "Nakamura", ["Aiko"]
    ident = Identifier()
    ident.system, ident.value = MRN, "SMART-1"
    patient.name, patient.identifier, patient.gender = [name], [ident], "female"
    patient.birthDate = None

    created = patient.create(smart.server)
    assert created is not None and created["resourceType"] == "Patient"
    pid = created["id"]

    read = SmartPatient.read(pid, smart.server)
    assert read.name[0].family == "Nakamura"
    assert read.identifier[0].value == "SMART-1"
    assert read.meta.versionId == "1"

    read.gender = "other"
    updated = read.update()
    assert updated["meta"]["versionId"] == "2"
    assert SmartPatient.read(pid, smart.server).gender == "other"

    search = SmartPatient.where(struct={"identifier": f"{MRN}|SMART-1"})
    found = list(search.perform_resources_iter(smart.server))
    assert [p.id for p in found] == [pid]

    read.delete()
    with pytest.raises(requests.HTTPError) as gone:
        SmartPatient.read(pid, smart.server)
    assert gone.value.response.status_code == 410
    with pytest.raises(FHIRNotFoundException):
        SmartPatient.read("never-existed", smart.server)


@pytest.mark.slow
@pytest.mark.process
async def test_fhirclient_crud(live_server: str, live_headers: dict[str, str]) -> None:
    await asyncio.to_thread(_smart_crud, live_server, live_headers)


@pytest.mark.slow
@pytest.mark.process
async def test_fhirpy_crud(live_server: str, live_headers: dict[str, str]) -> None:
    fhir = AsyncFHIRClient(live_server, extra_headers=live_headers)
    patient = fhir.resource("Patient", name=[{"family": "Okafor", "given": ["Chidi"]}],
                            gender="male", identifier=[{"system": MRN, "value": "PY-1"}])
    await patient.save()
    pid = patient["id"]
    assert pid and patient["meta"]["versionId"] == "1"

    fetched = await fhir.reference("Patient", pid).to_resource()
    assert fetched["name"][0]["family"] == "Okafor"

    fetched["gender"] = "unknown"
    await fetched.save()
    assert fetched["meta"]["versionId"] == "2"

    found = await fhir.resources("Patient").search(identifier=f"{MRN}|PY-1").fetch()
    assert [p["id"] for p in found] == [pid]

    await fetched.delete()
    with pytest.raises(ResourceNotFound):
        await fhir.reference("Patient", pid).to_resource()
    async with httpx.AsyncClient(headers=live_headers, timeout=HTTP_TIMEOUT) as http:
        assert (await http.get(f"{live_server}/Patient/{pid}")).status_code == 410
