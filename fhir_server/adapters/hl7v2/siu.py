"""SIU scheduling messages: S12 new booking, S13 reschedule, S14 modify, S15 cancel.

SCH -> Appointment (matched by SCH-1 placer or SCH-2 filler appointment id), PID -> the
patient participant, AIP -> practitioner participants, AIL -> location participants,
AIS -> serviceType. The Appointment is written like any FHIR write, so the booking rules
apply: a double booking is refused (the ACK is AE and names the conflicting
appointment), and a cancel cancels the booking's draft Invoice. S13, S14 and S15 need
the appointment to exist here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fhir_server.adapters.hl7v2 import segments
from fhir_server.adapters.hl7v2.message import (
    V2_TABLE,
    Segment,
    V2Error,
    V2Message,
    authority_system,
    codeable,
    dtm,
)
from fhir_server.adapters.upsert import Wanted
from fhir_server.revenue.states import AppointmentStatus

# SCH-25 filler status (HL7 table 0278) -> Appointment.status.
FILLER_STATUS = {"Booked": "booked", "Pending": "pending", "Waitlist": "waitlist",
                 "Cancelled": "cancelled", "Deleted": "entered-in-error", "Noshow": "noshow",
                 "Complete": "fulfilled", "Started": "arrived", "Overbook": "booked",
                 "Blocked": "booked", "Dc": "cancelled"}
UNITS = {"S": 1, "s": 1, "M": 60, "min": 60, "MIN": 60, "H": 3600, "h": 3600, "HR": 3600,
         "D": 86400, "d": 86400}


def _ei(msg: V2Message, sch: Segment, field_: int, type_code: str) -> dict[str, Any] | None:
    """EI -> Identifier: EI.1 entity id, EI.2-4 assigning authority."""
    value = sch.at(field_)
    if not value:
        return None
    system = authority_system(sch.at(field_, 2), sch.at(field_, 3), sch.at(field_, 4)) or \
        f"urn:hl7v2:authority:{segments.local_authority(msg)}"
    return {"type": {"coding": [{"system": V2_TABLE.format(203), "code": type_code}]},
            "system": system, "value": value}


def _start_end(msg: V2Message, sch: Segment) -> tuple[str | None, str | None, str]:
    """Start: SCH-11.4 (TQ start), else the first AIS-4, AIL-6 or AIP-6. End: SCH-11.5,
    else the start plus a duration: SCH-9 (units SCH-10), else the first AIS-7, AIL-9 or
    AIP-9 (units AIS-8, AIL-10, AIP-10; minutes by default)."""
    start, end, where = dtm(sch.at(11, 4), "SCH-11.4"), dtm(sch.at(11, 5), "SCH-11.5"), \
        "SCH-11"
    durations = [(sch, 9, 10)]
    for name, at, length, unit in (("AIS", 4, 7, 8), ("AIL", 6, 9, 10), ("AIP", 6, 9, 10)):
        for seg in msg.all(name):
            durations.append((seg, length, unit))
            if start is None and seg.at(at):
                start, where = dtm(seg.at(at), f"{name}-{at}"), f"{name}-{at}"
    if start is None or end is not None:
        return start, end, where
    for seg, length, unit in durations:
        duration = seg.at(length)
        if not duration:
            continue
        if not duration.isdigit():
            raise V2Error(f"{seg.name}-{length} (duration) is not a whole number",
                          where=f"{seg.name}-{length}", code="102")
        if "T" not in start:
            raise V2Error(f"{where} needs a time of day", where=where, code="102")
        seconds = int(duration) * UNITS.get(seg.at(unit) or "M", 60)
        finish = datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(seconds=seconds)
        return start, finish.isoformat().replace("+00:00", "Z"), where
    return start, None, where


def map_siu(msg: V2Message, trigger: str) -> segments.Mapped:
    sch = msg.one("SCH")
    assert sch is not None
    ids = [i for i in (_ei(msg, sch, 1, "PLAC"), _ei(msg, sch, 2, "FILL")) if i]
    if not ids:
        raise V2Error("SCH-1 or SCH-2 (appointment id) is required", where="SCH-1", code="101")
    mapped = segments.Mapped()
    patient = segments.patient(msg, mapped)
    content: dict[str, Any] = {"identifier": ids}
    filler = sch.at(25)
    if trigger == "S15":
        content["status"] = AppointmentStatus.CANCELLED.value
    elif filler:
        if filler not in FILLER_STATUS:
            raise V2Error("SCH-25 is not a code of HL7 table 0278", where="SCH-25", code="103")
        content["status"] = FILLER_STATUS[filler]
    elif trigger == "S12":
        content["status"] = AppointmentStatus.BOOKED.value
    start, end, where = _start_end(msg, sch)
    if start:
        content["start"] = start
    if end:
        content["end"] = end
    for key, field_, table in (("appointmentType", 8, 277), ("reasonCode", 7, None)):
        value = codeable(sch, field_, table=table)
        if value:
            content[key] = [value] if key == "reasonCode" else value
    services = [c for seg in msg.all("AIS") if (c := codeable(seg, 3))]
    if services:
        content["serviceType"] = services
    participants = [{"actor": {"reference": patient}, "status": "accepted"}]
    for n, aip in enumerate(msg.all("AIP"), 1):
        ref = segments.practitioner(msg, aip, 3, 1, mapped, key=f"aip-{n}")
        if ref:
            participants.append({"actor": {"reference": ref}, "status": "accepted"})
    for n, ail in enumerate(msg.all("AIL"), 1):
        ref = segments.location(msg, ail, 3, mapped, key=f"ail-{n}")
        if ref:
            participants.append({"actor": {"reference": ref}, "status": "accepted"})
    content["participant"] = participants
    appointment = Wanted(key="appointment", type_="Appointment",
                         match=[(i["system"], i["value"]) for i in ids], content=content,
                         defaults={"status": "booked"}, create=trigger == "S12",
                         source="SCH")
    if trigger == "S12" and "start" not in content:
        raise V2Error("A new booking needs a start (SCH-11.4, AIS-4, AIL-6 or AIP-6)",
                      where=where, code="101")
    mapped.add(appointment)
    return mapped
