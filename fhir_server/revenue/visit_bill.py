"""A finished visit's bill: what the billing worker composes when an Encounter finishes.

The visit is the stored Encounter; its bill takes the patient's ``billable`` ChargeItems
whose ``context`` is the Encounter and that no bill holds yet, and is composed by the same
code as ``Invoice/$generate-bill`` (``billing.compose``: charges without a price are
priced from the price list; with Coverage in force, a Claim). A visit is billed once: its
key is its appointment (the Encounter's first, when stored here) and the Encounter, and a
visit whose key has an issued Invoice is not billed again. Nothing is written here; the
caller commits the bill under ``billing.lease_names(visit.keys)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.core.config import Settings
from fhir_server.revenue import billing
from fhir_server.revenue.records import LOCAL_REF, Resource, read_local
from fhir_server.service import interactions as svc
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import BILL_INVOICE

MAX_CHARGES = 1000


@dataclass(frozen=True)
class Visit:
    """A finished Encounter of a patient, and the keys of its bill."""

    encounter: Resource
    patient_ref: str
    keys: list[str]

    @property
    def reference(self) -> str:
        return f"Encounter/{self.encounter['id']}"


def bill_keys(id_: str, encounter: Resource) -> list[str]:
    """The keys of an Encounter's bill: its appointment (a local reference), then itself."""
    linked = ((encounter.get("appointment") or [{}])[0] or {}).get("reference")
    appointment = linked if isinstance(linked, str) and LOCAL_REF.match(linked) and \
        linked.startswith("Appointment/") else None
    return [k for k in (appointment, f"Encounter/{id_}") if k]


async def finished_visit(repo: Repository, encounter_id: str) -> Visit | None:
    """The visit of a stored Encounter, when it is ``finished`` and has a patient subject."""
    _, encounter = await svc.current_resource(repo, "Encounter", encounter_id)
    if encounter is None or encounter.get("status") != "finished":
        return None
    patient_ref = (encounter.get("subject") or {}).get("reference")
    if not isinstance(patient_ref, str) or not patient_ref.startswith("Patient/"):
        return None
    return Visit(encounter={**encounter, "id": encounter_id}, patient_ref=patient_ref,
                 keys=bill_keys(encounter_id, encounter))


async def compose_visit_bill(*, repo: Repository, settings: Settings,
                             visit: Visit) -> billing.Bill | None:
    """The visit's bill, or None when there is nothing to bill (no unbilled charges, or
    the visit's bill was issued already). ``Unprocessable`` when it cannot be composed
    (a code without a price, an insured patient's Claim without a provider)."""
    charges = await unbilled_charges(repo=repo, settings=settings, visit=visit)
    if not charges:
        return None
    issued, draft = await billing.bills_of(repo=repo, settings=settings, keys=visit.keys,
                                           patient_ref=visit.patient_ref)
    if issued is not None:
        return None
    appointment = await read_local(repo, visit.keys[0]) if len(visit.keys) > 1 else None
    return await billing.compose(repo=repo, settings=settings, patient_ref=visit.patient_ref,
                                 encounter=visit.encounter, appointment=appointment,
                                 keys=visit.keys, draft=draft, charges=charges)


async def unbilled_charges(*, repo: Repository, settings: Settings,
                           visit: Visit) -> list[billing.Charge]:
    """The patient's billable ChargeItems of the visit that no bill holds, by id."""
    found = await svc.find_resources(repo=repo, settings=settings, type_="ChargeItem",
                                     limit=MAX_CHARGES,
                                     criteria=[("context", visit.reference)])
    out = []
    for item in sorted(found, key=lambda i: str(i.get("id"))):
        if item.get("status") != "billable" \
                or (item.get("subject") or {}).get("reference") != visit.patient_ref \
                or any(i.get("system") == BILL_INVOICE for i in item.get("identifier") or []):
            continue
        content = {k: v for k, v in item.items() if k != "meta"}
        out.append(billing.Charge(item=content, previous=int(item["meta"]["versionId"]),
                                  where=f"ChargeItem/{item['id']}.code"))
    return out
