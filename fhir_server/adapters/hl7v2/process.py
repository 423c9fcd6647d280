"""One HL7 v2 message's way through: parse -> map -> one transaction -> ACK.

A message is applied all or nothing (``fhir_server/adapters/upsert.py`` over the transaction
machinery), under leases on the identifiers it names, so two connections cannot create
the same patient twice. Its sender and MSH-10 are recorded once it is applied; the same
message again is answered with the same acknowledgement code without being applied
again (and would change nothing if it were: resources are matched by identifier and
unchanged ones are left alone). Every message is audited (an AuditEvent of type
110107 Import, the sending application and facility as its agent); the log has the
message control id, type and ACK code only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.adapters.hl7v2.ack import acknowledge, reject_unparsed
from fhir_server.adapters.hl7v2.adt import EVENT_STATUS, map_adt
from fhir_server.adapters.hl7v2.dft import map_dft
from fhir_server.adapters.hl7v2.message import V2Error, V2Message
from fhir_server.adapters.hl7v2.segments import Mapped
from fhir_server.adapters.hl7v2.siu import map_siu
from fhir_server.adapters.records import Records
from fhir_server.adapters.upsert import Applied, WriteFailed, apply, identify
from fhir_server.audit import events
from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.storage.locks import LockBusy
from fhir_server.storage.model import instant, now_ms
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.adapters.hl7v2")
SIU_EVENTS = ("S12", "S13", "S14", "S15")
APPLICATION_SYSTEM = "urn:hl7v2:application"
MESSAGE_SYSTEM = "urn:hl7v2:message"
RETRIES = 3  # a message whose records changed under it (409/412) is applied again
LEASE_WAIT = 30.0
IMPORT = {"system": events.DCM, "code": "110107", "display": "Import"}


@dataclass
class Outcome:
    code: str  # AA | AE | AR
    errors: list[V2Error] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    patient: str | None = None
    keep: bool = False  # recorded as applied (answered the same way when sent again)


def _fhir_error(error: FhirError, where: str) -> V2Error:
    """A refusal of the FHIR layer as an ERR: what (table 0357) and where (the segment)."""
    code = {404: "204", 412: "205"}.get(error.status, "207")
    if error.status == 422 and error.code == "not-found":
        code = "204"
    elif error.status == 400:
        code = "102"
    return V2Error(error.diagnostics, where=where, code=code)


class PriceLookup(Protocol):
    """The price list's entry for a service code (``revenue/billing.py``'s
    ``price_definition``, handed in by ``main.py``'s wiring: adapters do not import
    operations); raises a FhirError naming ``where`` when the code has no price."""

    async def __call__(self, repo: Repository, settings: Settings, coding: dict[str, Any],
                       where: str) -> dict[str, Any]: ...


class Processor:
    def __init__(self, *, repo: Repository, settings: Settings, audit: Any,
                 records: Records, price_definition: PriceLookup) -> None:
        self.repo, self.settings, self.audit, self.records = repo, settings, audit, records
        self.price_definition = price_definition

    async def handle(self, text: str, peer: str | None = None) -> str:
        """The acknowledgement of one message (applied first, when it can be)."""
        try:
            msg = V2Message(text)
        except V2Error as error:
            log.info("hl7v2 message rejected unparsed code=%s", error.code)
            return reject_unparsed(error)
        try:
            outcome = await self._once(msg)
        except LockBusy:
            outcome = Outcome("AE", [V2Error("Another message about the same records is being "
                                             "applied; send again", code="206")])
        self._audit(msg, outcome, peer)
        log.info("hl7v2 message control_id=%s type=%s ack=%s", msg.control_id[:40],
                 "^".join(msg.event)[:10], outcome.code)
        return acknowledge(msg, outcome.code, outcome.errors)

    async def _once(self, msg: V2Message) -> Outcome:
        if not msg.control_id:
            return Outcome("AR", [V2Error("MSH-10 (message control id) is required",
                                          where="MSH-10", code="101")])
        version = msg.msh.at(12)
        if version and not version.startswith("2."):
            return Outcome("AR", [V2Error("MSH-12: only HL7 version 2.x is taken",
                                          where="MSH-12", code="203")])
        key = "|".join([*msg.sender, msg.control_id])
        async with self.repo.locks.hold([f"hl7msg:{key}"]):
            seen = await self.records.get(key)
            if seen is not None:  # applied before: the same answer, nothing applied again
                return Outcome(str(seen.get("ack", "AA")), [
                    V2Error(str(e.get("text", "")), where=str(e.get("where", "")),
                            code=str(e.get("code", "207"))) for e in seen.get("errors", [])])
            outcome = await self._apply(msg)
            if outcome.keep:
                await self.records.put(key, {"ack": outcome.code, "at": instant(now_ms()),
                                             "errors": [{"text": e.text, "where": e.where,
                                                         "code": e.code}
                                                        for e in outcome.errors]})
        return outcome

    async def _apply(self, msg: V2Message) -> Outcome:
        try:
            mapped = await self._map(msg)
            for attempt in range(RETRIES):
                try:
                    applied = await self._write(mapped)
                    break
                except WriteFailed as failed:
                    if failed.error.status not in (409, 412) or attempt == RETRIES - 1:
                        raise
        except V2Error as error:
            # An A40 is understood and recorded, but not applied: AE, answered the same again.
            return Outcome("AR" if error.reject else "AE", [error],
                           keep=msg.event == ("ADT", "A40"))
        except WriteFailed as failed:
            where = failed.wanted.source if failed.wanted else "MSH"
            return Outcome("AE", [_fhir_error(failed.error, where)])
        except FhirError as error:
            return Outcome("AE", [_fhir_error(error, "MSH")])
        written = [f"{w.type_}/{w.id_}" for w in applied.wanted if w.outcome != "unchanged"]
        patient = next((f"Patient/{w.id_}" for w in applied.wanted if w.type_ == "Patient"), None)
        return Outcome("AA", written=written, patient=patient, keep=True)

    async def _write(self, mapped: Mapped) -> Applied:
        """Apply the mapped resources under leases on their identifiers, so that two
        connections cannot both create the same patient: the message's own resources
        (its patient, visit, coverage...) always; resources many messages name (a
        practitioner, a payer, a room) only when they are not stored yet, so that
        messages about different patients do not queue behind each other."""
        locks, wanted = self.repo.locks, mapped.wanted
        own = {w.key for w in wanted if not w.shared}
        async with locks.hold(mapped.leases(own), wait=LEASE_WAIT):
            found = await identify(self.repo, self.settings, wanted)
            new_shared = {w.key for w in wanted if w.shared and w.key not in found}
            async with locks.hold(mapped.leases(new_shared), wait=LEASE_WAIT):
                if new_shared:  # created meanwhile by another message?
                    found.update(await identify(self.repo, self.settings,
                                                [w for w in wanted if w.key in new_shared]))
                return await apply(self.repo, self.settings, wanted, found=found)

    async def _map(self, msg: V2Message) -> Mapped:
        kind, trigger = msg.event
        if kind == "ADT":
            if trigger not in (*EVENT_STATUS, "A40"):
                raise V2Error(f"ADT^{trigger[:3]} is not taken here", where="MSH-9",
                              code="201", reject=True)
            return map_adt(msg, trigger)
        if kind == "SIU":
            if trigger not in SIU_EVENTS:
                raise V2Error(f"SIU^{trigger[:3]} is not taken here", where="MSH-9",
                              code="201", reject=True)
            return map_siu(msg, trigger)
        if kind == "DFT" and trigger == "P03":
            mapped, unpriced = map_dft(msg, self.settings)
            for where, coding in unpriced:
                try:
                    await self.price_definition(self.repo, self.settings, coding, where)
                except FhirError as error:
                    raise V2Error(error.diagnostics, where=where, code="103") from None
            return mapped
        raise V2Error(f"{kind[:3]}^{trigger[:3]} messages are not taken here", where="MSH-9",
                      code="200" if kind not in ("ADT", "SIU", "DFT") else "201", reject=True)

    def _audit(self, msg: V2Message, outcome: Outcome, peer: str | None) -> None:
        if self.audit is None:
            return
        application, facility = msg.sender
        entities: list[dict[str, Any]] = [
            {"what": {"identifier": {"system": MESSAGE_SYSTEM,
                                     "value": msg.control_id[:64] or "-"}},
             "type": {"system": events.ENTITY_TYPE, "code": "2", "display": "System Object"},
             "role": {"system": events.OBJECT_ROLE, "code": "3", "display": "Report"},
             "name": "^".join(msg.event)[:10]}]
        entities += [events.instance_entity(ref) for ref in outcome.written]
        if outcome.patient:
            entities.append(events.patient_entity(outcome.patient.split("/", 1)[1]))
        agent = {"type": {"coding": [{"system": events.DCM, "code": "110153",
                                      "display": "Source Role ID"}]},
                 "who": {"identifier": {"system": APPLICATION_SYSTEM,
                                        "value": f"{application}^{facility}"[:128] or "-"}},
                 "name": f"{application}^{facility}"[:128], "requestor": True}
        if peer:
            agent["network"] = {"address": peer, "type": "2"}
        self.audit.record({
            "resourceType": "AuditEvent", "type": IMPORT,
            "subtype": [{"system": "urn:hl7v2:message-type", "code": "^".join(msg.event)[:10]}],
            "action": "E", "recorded": instant(now_ms()),
            "outcome": {"AA": "0", "AE": "4", "AR": "4"}.get(outcome.code, "8"),
            "outcomeDesc": f"HL7 v2 {outcome.code}",
            "agent": [agent], "source": events.source(self.settings.base_url),
            "entity": entities})
