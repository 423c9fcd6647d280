"""An HL7 v2 message as the mappings read it: fields by position, data types as FHIR.

Parsing is python-hl7's (``hl7.parse``); this module adds what the mappings need:
values by segment, field, repetition and component (1-based, as the standard numbers
them), unescaped; and the v2 data types turned into FHIR data types after the HL7
v2-to-FHIR IG (CX -> Identifier, XPN -> HumanName, XAD -> Address, XTN ->
ContactPoint, CWE -> CodeableConcept, DTM/DT -> dateTime/date). An empty field
means "not sent"; the v2 null ``""`` is read as empty too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import hl7

V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-{:04d}"
DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")


class V2Error(Exception):
    """Bad input: ``code`` is an HL7 table 0357 error code, ``where`` a location such as
    ``PID-7`` (segment-field); ``reject`` true answers AR (the message cannot be taken at
    all), false AE (it was understood, but refused)."""

    def __init__(self, text: str, *, where: str = "", code: str = "207",
                 reject: bool = False) -> None:
        super().__init__(text)
        self.text, self.where, self.code, self.reject = text, where, code, reject


@dataclass(frozen=True)
class Segment:
    name: str
    index: int  # 1-based occurrence of this segment name in the message
    message: Any  # the hl7.Message
    raw: Any  # the hl7.Segment

    def at(self, field: int, component: int = 1, repetition: int = 1,
           sub: int = 1) -> str:
        """One value, unescaped ('' when absent or the v2 null)."""
        try:
            value = self.message.extract_field(self.name, self.index, field, repetition,
                                               component, sub)
        except (IndexError, KeyError, TypeError, ValueError):
            return ""
        text = _unescape(str(value))
        return "" if text == '""' else text.strip()

    def repetitions(self, field: int) -> int:
        try:
            text = str(self.raw[field])
        except IndexError:
            return 0
        return len(text.split("~")) if text else 0

    def where(self, field: int, component: int | None = None) -> str:
        return f"{self.name}-{field}" + (f".{component}" if component else "")


_ESCAPES = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\([FSTRE])\\", lambda m: _ESCAPES[m.group(1)], text)


class V2Message:
    def __init__(self, text: str) -> None:
        text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
        if not text.startswith("MSH"):
            raise V2Error("The message does not start with an MSH segment", where="MSH",
                          code="100", reject=True)
        if len(text) < 8 or text[3] != "|" or text[4:8] != "^~\\&":
            raise V2Error("MSH-1/MSH-2 must be '|' and '^~\\&'", where="MSH-2", code="102",
                          reject=True)
        self.msh_text = text.split("\r", 1)[0]  # as sent, for the acknowledgement
        try:
            self.raw = hl7.parse(text)
        except Exception:
            raise V2Error("The message cannot be parsed", where="MSH", code="102",
                          reject=True) from None
        self.segments: list[Segment] = []
        counts: dict[str, int] = {}
        for raw in self.raw:
            name = str(raw[0]).strip()
            if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", name):
                raise V2Error("A segment has no valid name", where=name[:3] or "?",
                              code="100", reject=True)
            counts[name] = counts.get(name, 0) + 1
            self.segments.append(Segment(name, counts[name], self.raw, raw))
        self.msh = self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def one(self, name: str, *, required: bool = True) -> Segment | None:
        found = self.all(name)
        if not found and required:
            raise V2Error(f"The message has no {name} segment", where=name, code="100")
        return found[0] if found else None

    @property
    def control_id(self) -> str:
        return self.msh.at(10)

    @property
    def event(self) -> tuple[str, str]:
        """(message code, trigger event), e.g. ("ADT", "A04")."""
        return self.msh.at(9, 1), self.msh.at(9, 2)

    @property
    def sender(self) -> tuple[str, str]:
        """(sending application, sending facility): MSH-3.1, MSH-4.1."""
        return self.msh.at(3, 1), self.msh.at(4, 1)


# --- data types -------------------------------------------------------------------------

def dtm(value: str, where: str) -> str | None:
    """A DTM/TS value as a FHIR date or dateTime (None when empty). With a time, an offset is
    needed by FHIR: without one the value is read as UTC."""
    if not value:
        return None
    m = DTM.match(value)
    if not m:
        raise V2Error(f"{where} is not an HL7 date/time (YYYY[MM[DD[HH[MM[SS]]]]][+/-ZZZZ])",
                      where=where, code="102")
    year, month, day, hour, minute, second, _frac, zone = m.groups()
    if hour is None:
        return "-".join(p for p in (year, month, day) if p)
    if day is None or month is None:
        raise V2Error(f"{where} has a time without a full date", where=where, code="102")
    offset = "Z" if not zone or zone in ("+0000", "-0000") else f"{zone[:3]}:{zone[3:]}"
    return f"{year}-{month}-{day}T{hour}:{minute or '00'}:{second or '00'}{offset}"


def date_of(value: str, where: str) -> str | None:
    stamp = dtm(value, where)
    return stamp[:10] if stamp else None


def authority_system(namespace: str, universal: str, kind: str) -> str | None:
    """The Identifier.system of an HD (assigning authority): its universal id as a URI
    (ISO OIDs as urn:oid:, UUIDs as urn:uuid:, URIs as they are), or else its namespace."""
    if universal:
        if kind.upper() == "ISO" or re.fullmatch(r"[0-2](\.\d+)+", universal):
            return f"urn:oid:{universal}"
        if kind.upper() == "UUID":
            return f"urn:uuid:{universal.lower()}"
        if ":" in universal:
            return universal
    if namespace:
        return f"urn:hl7v2:authority:{namespace}"
    return None


def identifier(seg: Segment, field: int, rep: int = 1, *,
               default_authority: str = "") -> dict[str, Any] | None:
    """CX -> Identifier: CX.1 value, CX.4 assigning authority -> system, CX.5 type."""
    value = seg.at(field, 1, rep)
    if not value:
        return None
    system = authority_system(seg.at(field, 4, rep, 1), seg.at(field, 4, rep, 2),
                              seg.at(field, 4, rep, 3)) or (
        f"urn:hl7v2:authority:{default_authority}" if default_authority else None)
    out: dict[str, Any] = {}
    type_code = seg.at(field, 5, rep)
    if type_code:
        out["type"] = {"coding": [{"system": V2_TABLE.format(203), "code": type_code}]}
    if system:
        out["system"] = system
    out["value"] = value
    return out


NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous",
            "C": "old", "S": "anonymous", "B": "official", "U": "temp"}


def human_name(seg: Segment, field: int, rep: int = 1, *, first: int = 1
               ) -> dict[str, Any] | None:
    """XPN (or the name part of XCN, starting at component ``first`` = 2) -> HumanName."""
    family, given, middle = (seg.at(field, first, rep), seg.at(field, first + 1, rep),
                             seg.at(field, first + 2, rep))
    suffix, prefix = seg.at(field, first + 3, rep), seg.at(field, first + 4, rep)
    out: dict[str, Any] = {}
    use = NAME_USE.get(seg.at(field, first + 6, rep)) if first == 1 else None
    if use:
        out["use"] = use
    if family:
        out["family"] = family
    names = [n for n in (given, middle) if n]
    if names:
        out["given"] = names
    if prefix:
        out["prefix"] = [prefix]
    if suffix:
        out["suffix"] = [suffix]
    return out if (family or names) else None


ADDRESS_USE = {"H": ("home", None), "B": ("work", None), "O": ("work", None),
               "C": ("temp", None), "BA": ("old", None), "M": (None, "postal"),
               "P": (None, "physical")}


def address(seg: Segment, field: int, rep: int = 1) -> dict[str, Any] | None:
    """XAD -> Address: 1 street (line), 2 other designation (line), 3 city, 4 state,
    5 postal code, 6 country, 7 type -> use/type."""
    lines = [v for v in (seg.at(field, 1, rep), seg.at(field, 2, rep)) if v]
    out: dict[str, Any] = {}
    use, kind = ADDRESS_USE.get(seg.at(field, 7, rep), (None, None))
    if use:
        out["use"] = use
    if kind:
        out["type"] = kind
    if lines:
        out["line"] = lines
    for key, component in (("city", 3), ("state", 4), ("postalCode", 5), ("country", 6)):
        if seg.at(field, component, rep):
            out[key] = seg.at(field, component, rep)
    return out if set(out) - {"use", "type"} else None


TELECOM_USE = {"PRN": "home", "ORN": "home", "VHN": "home", "WPN": "work", "PRS": "mobile",
               "EMR": "home"}  # NET (network address) and others: the field's own use


def contact_point(seg: Segment, field: int, rep: int = 1, *,
                  default_use: str) -> dict[str, Any] | None:
    """XTN -> ContactPoint: 4 email (system email), else 12 unformatted, else 6+7 area and
    local number, else 1; 2 use code, 3 equipment (PH phone, FX fax, CP mobile phone,
    Internet email)."""
    equipment = seg.at(field, 3, rep)
    email = seg.at(field, 4, rep)
    number = seg.at(field, 12, rep) or "".join(
        seg.at(field, c, rep) for c in (6, 7)) or seg.at(field, 1, rep)
    value = email or number
    if not value:
        return None
    system = "email" if email or equipment in ("Internet", "X.400") else (
        "fax" if equipment == "FX" else "pager" if equipment == "BP" else "phone")
    use = TELECOM_USE.get(seg.at(field, 2, rep), default_use)
    if equipment == "CP":
        use = "mobile"
    out: dict[str, Any] = {"system": system, "value": value}
    if use:
        out["use"] = use
    return out


def codeable(seg: Segment, field: int, rep: int = 1, *,
             table: int | None = None) -> dict[str, Any] | None:
    """CWE/CE -> CodeableConcept: 1 code, 2 text (display), 3 coding system (a v2 table
    ``HL7nnnn`` becomes its terminology.hl7.org URI); ``table`` when the field is bound."""
    code, text, system = seg.at(field, 1, rep), seg.at(field, 2, rep), seg.at(field, 3, rep)
    if not code and not text:
        return None
    coding: dict[str, Any] = {}
    uri = coding_system(system) if system else (V2_TABLE.format(table) if table else None)
    if uri:
        coding["system"] = uri
    if code:
        coding["code"] = code
    if text:
        coding["display"] = text
    out: dict[str, Any] = {"coding": [coding]} if code else {}
    if text:
        out["text"] = text
    return out


CODING_SYSTEMS = {"CPT": "http://www.ama-assn.org/go/cpt", "C4": "http://www.ama-assn.org/go/cpt",
                  "HCPCS": "urn:oid:2.16.840.1.113883.6.285",
                  "I10": "http://hl7.org/fhir/sid/icd-10", "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
                  "I10P": "http://www.cms.gov/Medicare/Coding/ICD10", "LN": "http://loinc.org",
                  "SCT": "http://snomed.info/sct", "SNM": "http://snomed.info/sct",
                  "NDC": "http://hl7.org/fhir/sid/ndc"}


def coding_system(name: str) -> str:
    """A v2 coding system name (table 0396) as a FHIR system URI; a local name ``L`` or
    ``99zzz`` as ``urn:hl7v2:codesystem:NAME``."""
    if name in CODING_SYSTEMS:
        return CODING_SYSTEMS[name]
    m = re.fullmatch(r"HL7(\d{4})", name)
    if m:
        return V2_TABLE.format(int(m.group(1)))
    if ":" in name:
        return name
    return f"urn:hl7v2:codesystem:{name}"


def decimal_text(value: str, where: str) -> str | None:
    """An NM value as a JSON number text (None when empty)."""
    if not value:
        return None
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value):
        raise V2Error(f"{where} is not a number", where=where, code="102")
    text = value.lstrip("+")
    return ("0" + text) if text.startswith(".") else text
