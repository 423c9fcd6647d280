"""Encounter rule: the visit ends in a bill.

When an Encounter becomes ``finished`` (created finished, or updated to it, by any
write path: a FHIR write, a transaction, an HL7 v2 A03) and the patient has billable
ChargeItems for it that no bill holds yet, the bill is composed by the same code as
``Invoice/$generate-bill`` (``fhir_server/revenue/billing.py``: charges without a price are priced
from the price list) and written in the same all-or-nothing commit as the Encounter:
the ChargeItems (now naming their Invoice), the issued Invoice and, with Coverage in
force, the Claim. A visit already billed (an issued Invoice with its key) is not billed
again, so it happens exactly once; the lease ``bill:Encounter/[id]`` (the one
``$generate-bill`` takes) keeps the two from racing. ``FHIR_BILL_ON_FINISH=false``
turns the rule off. A charge that cannot be priced refuses the Encounter write (422),
so nothing is half-billed.

ChargeItems written by the same transaction as the finishing Encounter are not part of
its bill (a rule's side writes cannot rewrite another entry); they can be billed with
``$generate-bill``.
"""

from __future__ import annotations

from typing import Any

from fhir_server.revenue import billing
from fhir_server.revenue.records import LOCAL_REF, read_local
from fhir_server.service import interactions as svc
from fhir_server.service import write_rules as rules
from fhir_server.terminology.systems import BILL_INVOICE

MAX_CHARGES = 1000


def _finishing(change: rules.Change) -> bool:
    after, before = change.after, change.before
    return after is not None and after.get("status") == "finished" and (
        before is None or before.get("status") != "finished")


def _keys(id_: str, encounter: dict[str, Any]) -> list[str]:
    linked = ((encounter.get("appointment") or [{}])[0] or {}).get("reference")
    appointment = linked if isinstance(linked, str) and LOCAL_REF.match(linked) and \
        linked.startswith("Appointment/") else None
    return [k for k in (appointment, f"Encounter/{id_}") if k]


class EncounterBillRule:
    def lease_names(self, change: rules.Change) -> list[str]:
        if not _finishing(change):
            return []
        return billing.lease_names(_keys(change.id_, change.after or {}))

    async def check(self, ctx: rules.RuleContext, change: rules.Change) -> list[rules.SideWrite]:
        if not ctx.settings.fhir_bill_on_finish or not _finishing(change):
            return []
        encounter = {**(change.after or {}), "id": change.id_}
        patient_ref = (encounter.get("subject") or {}).get("reference")
        if not isinstance(patient_ref, str) or not patient_ref.startswith("Patient/"):
            return []
        charges = await self._unbilled(ctx, change.id_, patient_ref)
        if not charges:
            return []
        keys = _keys(change.id_, encounter)
        issued, draft = await billing.bills_of(repo=ctx.repo, settings=ctx.settings, keys=keys,
                                               patient_ref=patient_ref)
        if issued is not None:
            return []
        appointment = await read_local(ctx.repo, keys[0]) if len(keys) > 1 else None
        bill = await billing.compose(repo=ctx.repo, settings=ctx.settings, patient_ref=patient_ref,
                                     encounter=encounter, appointment=appointment, keys=keys,
                                     draft=draft, charges=charges)
        return [rules.SideWrite(r["resourceType"], r["id"], r) for r, _ in bill.writes]

    async def _unbilled(self, ctx: rules.RuleContext, id_: str,
                        patient_ref: str) -> list[billing.Charge]:
        found = await svc.find_resources(
            repo=ctx.repo, settings=ctx.settings, type_="ChargeItem", limit=MAX_CHARGES,
            criteria=[("context", f"Encounter/{id_}")])
        written = {f"{c.type_}/{c.id_}" for c in ctx.siblings}
        out = []
        for item in sorted(found, key=lambda i: str(i.get("id"))):
            if item.get("status") != "billable" \
                    or (item.get("subject") or {}).get("reference") != patient_ref \
                    or f"ChargeItem/{item['id']}" in written \
                    or any(i.get("system") == BILL_INVOICE for i in item.get("identifier") or []):
                continue
            content = {k: v for k, v in item.items() if k != "meta"}
            out.append(billing.Charge(item=content, previous=int(item["meta"]["versionId"]),
                                      where=f"ChargeItem/{item['id']}.code"))
        return out
