"""HL7 v2 test messages, built from their fields, and a real MLLP client (python-hl7's
asyncio streams) to send them. Expected values are read back from the message text with
``field()``, independently of the server's parser."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import hl7
from hl7.mllp import open_hl7_connection

SENDER = ("EPIC", "GENHOSP")


def message(kind: str, segments: list[str], *, control_id: str | None = None,
            version: str = "2.5.1") -> str:
    control = control_id or uuid.uuid4().hex[:20]
    msh = (f"MSH|^~\\&|{SENDER[0]}|{SENDER[1]}|RCM|CLINIC|20260105093000||{kind}|{control}|P|"
           f"{version}")
    return "\r".join([msh, *segments]) + "\r"


def field(text: str, segment: str, number: int, component: int = 1, repetition: int = 1,
          occurrence: int = 1) -> str:
    """A value from message text, split by hand (MSH fields counted as the standard does)."""
    found = [s for s in text.strip("\r").split("\r") if s.startswith(segment + "|")]
    parts = found[occurrence - 1].split("|")
    index = number - 1 if segment == "MSH" else number
    if index >= len(parts):
        return ""
    reps = parts[index].split("~")
    if repetition > len(reps):
        return ""
    comps = reps[repetition - 1].split("^")
    return comps[component - 1].split("&")[0] if component <= len(comps) else ""


def v2_date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}"


def v2_instant(value: str) -> str:
    """YYYYMMDDHHMM[SS][+ZZZZ] as FHIR (UTC when no offset)."""
    zone = value[-5:] if value[-5:-4] in "+-" and len(value) > 14 else ""
    body = value[: len(value) - len(zone)]
    seconds = body[12:14] or "00"
    offset = "Z" if not zone or zone in ("+0000", "-0000") else f"{zone[:3]}:{zone[3:]}"
    return f"{v2_date(body)}T{body[8:10]}:{body[10:12]}:{seconds}{offset}"


class Ack:
    def __init__(self, text: str) -> None:
        self.text = text
        self.message = hl7.parse(text)

    def value(self, segment: str, number: int, component: int = 1) -> str:
        try:
            return str(self.message.extract_field(segment, 1, number, 1, component, 1))
        except (IndexError, KeyError):
            return ""

    @property
    def code(self) -> str:
        return self.value("MSA", 1)

    @property
    def control_id(self) -> str:
        return self.value("MSA", 2)

    @property
    def errors(self) -> list[str]:
        return [s for s in self.text.strip("\r").split("\r") if s.startswith("ERR|")]


class MllpClient:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, text: str) -> Ack:
        self.writer.writeblock(text.encode("utf-8"))
        await self.writer.drain()
        block = await self.reader.readblock()
        return Ack(block.decode("utf-8"))

    async def send_raw(self, data: bytes) -> Ack:
        self.writer.writeblock(data)
        await self.writer.drain()
        return Ack((await self.reader.readblock()).decode("utf-8"))


@asynccontextmanager
async def mllp(port: int) -> AsyncIterator[MllpClient]:
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    try:
        yield MllpClient(reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment from its fields by number (MSH aside, field n is the n-th after the name)."""
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([name, *values])


def pid(*, mrn: str, family: str = "Nakamura", given: str = "Kenji", birth: str = "19800214",
        sex: str = "M", street: str = "12 Elm St") -> str:
    return seg("PID", {1: "1", 3: f"{mrn}^^^GENHOSP^MR~999-{mrn}^^^SSA^SS",
                       5: f"{family}^{given}^J", 7: birth, 8: sex,
                       11: f"{street}^Apt 3^Springfield^IL^62701^USA^H",
                       13: "^PRN^PH^^^217^5551234~^NET^Internet^k@x.org",
                       14: "^WPN^PH^^^217^5559876"})


def pv1(*, visit: str, patient_class: str = "O", admitted: str = "202601050900",
        discharged: str = "", attending: str = "D100^Osei^Ama") -> str:
    return seg("PV1", {1: "1", 2: patient_class, 3: "CLINIC^101^A^GENHOSP",
                       7: f"{attending}^^^^^^GENHOSP", 10: "GEN", 19: f"V{visit}^^^GENHOSP^VN",
                       36: "01", 44: admitted, 45: discharged})


def adt(trigger: str, *, mrn: str, visit: str, insurance: list[str] | None = None,
        guarantor: str | None = None, control_id: str | None = None, **kwargs: Any) -> str:
    visit_keys = ("patient_class", "admitted", "discharged", "attending")
    segments = [f"EVN|{trigger}|20260105093000",
                pid(mrn=mrn, **{k: v for k, v in kwargs.items() if k not in visit_keys}),
                pv1(visit=visit, **{k: v for k, v in kwargs.items() if k in visit_keys}),
                *(insurance or []), *([guarantor] if guarantor else [])]
    return message(f"ADT^{trigger}^ADT_A01", segments, control_id=control_id)


def in1(n: int = 1, *, payer: str = "ACME01", payer_name: str = "Acme Health",
        member: str = "M-100", plan: str = "GOLD^Gold Plan", start: str = "20260101",
        end: str = "20261231", relation: str = "SEL") -> str:
    return seg("IN1", {1: str(n), 2: plan, 3: f"{payer}^^^PAYERS", 4: payer_name, 8: "GRP7",
                       9: "Springfield Co", 12: start, 13: end,
                       15: "HMO^Health maintenance^HL70086", 17: relation, 22: str(n),
                       49: f"{member}^^^ACME"})


def gt1(*, number: str = "G-77", family: str = "Nakamura", given: str = "Yuki",
        relation: str = "SPO") -> str:
    return seg("GT1", {1: "1", 2: f"{number}^^^GENHOSP", 3: f"{family}^{given}",
                       5: "9 Oak Rd^^Springfield^IL^62701", 6: "^PRN^PH^^^217^5550000",
                       8: "19820301", 9: "F", 11: relation})
