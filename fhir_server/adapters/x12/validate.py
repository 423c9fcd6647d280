"""Validation of interchanges against the X12 5010 implementation guides' maps, with pyx12.

pyx12 4.0 ships the 5010 maps of the 837P (005010X222A1), 835 (005010X221A1),
277CA (005010X214) and 999 (005010X231A1), not those of the 270/271 (005010X279A1):
for these, only the envelope and this project's reader check what arrives.

pyx12's messages quote the values they complain about (names, member ids), so they
never leave this module: a ``Problem`` carries the segment, its position, the element
and the X12 error code, described with the 999's code lists.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import pyx12.errors
import pyx12.params
import pyx12.x12n_document

# pyx12 logs each error with the offending value: health data never goes to the log.
logging.getLogger("pyx12").setLevel(logging.CRITICAL + 1)

# IK304: segment syntax errors.
SEGMENT_ERRORS = {
    "1": "unrecognized segment", "2": "unexpected segment", "3": "required segment missing",
    "4": "loop occurs over its maximum times", "5": "segment exceeds its maximum use",
    "6": "segment not in the transaction set", "7": "segment not in proper sequence",
    "8": "segment has data element errors", "I4": "segment not used in this guide is present",
    "I6": "situational segment missing", "I7": "loop occurs under its minimum times",
    "I8": "segment below its minimum use", "I9": "situational segment present when not used",
}
# IK403: data element syntax errors.
ELEMENT_ERRORS = {
    "1": "required data element missing", "2": "conditional data element missing",
    "3": "too many data elements", "4": "data element too short", "5": "data element too long",
    "6": "invalid character in data element", "7": "invalid code value", "8": "invalid date",
    "9": "invalid time", "10": "exclusion condition violated", "12": "too many repetitions",
    "13": "too many components", "I10": "data element not used in this guide is present",
    "I11": "too few repetitions", "I12": "value does not match the guide's pattern",
    "I13": "situational data element present when not used",
    "I6": "code value not used in this guide", "I9": "situational data element missing",
}
# IK502 / AK905 / TA105: transaction set, group and interchange errors.
ENVELOPE_ERRORS = {
    "1": "transaction set not supported", "2": "trailer missing",
    "3": "control number in header and trailer do not match",
    "4": "number of included segments does not match the actual count",
    "5": "one or more segments in error", "6": "missing or invalid transaction set identifier",
    "7": "missing or invalid transaction set control number",
    "001": "interchange control numbers in header and trailer do not match",
    "021": "invalid number of included groups", "023": "improper end of file",
    "024": "invalid interchange content",
}


@dataclass(frozen=True)
class Problem:
    segment: str | None  # segment id (ISA, GS, ST level problems: that segment)
    position: int | None  # position in the transaction set (ST = 1), or line
    element: str | None  # "NM103", when one element is wrong
    code: str  # the X12 error code (IK304, IK403, IK502, ...)
    description: str

    @property
    def where(self) -> str:
        out = self.segment or "interchange"
        if self.position:
            out += f" segment {self.position}"
        return f"{out}, element {self.element}" if self.element else out


@dataclass(frozen=True)
class Report:
    problems: list[Problem]
    acknowledgement: str  # the 999 pyx12 wrote, when asked for

    @property
    def valid(self) -> bool:
        return not self.problems


def validate(text: str, *, acknowledge: bool = False) -> Report:
    """Check an interchange against its implementation guide's map (and, with
    ``acknowledge``, have pyx12 write the 999 that answers it)."""
    ack, errors = io.StringIO(), io.StringIO()
    try:
        ok = pyx12.x12n_document.x12n_document(pyx12.params.params(), io.StringIO(text),
                                               ack if acknowledge else None, None, None, errors)
    except (pyx12.errors.X12Error, pyx12.errors.EngineError, IndexError, ValueError) as exc:
        name = "no map for this transaction" if "Map not found" in str(exc) else "unreadable"
        return Report([Problem(None, None, None, "024", f"interchange {name}")], "")
    problems = _problems(json.loads(errors.getvalue() or '{"interchanges": []}'))
    if not ok and not problems:
        problems = [Problem(None, None, None, "024", "interchange not valid")]
    return Report(problems, ack.getvalue())


def _problems(doc: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    for isa in doc.get("interchanges", []):
        out += [_envelope("ISA", e) for e in isa.get("errors", [])]
        for gs in isa.get("groups", []):
            out += [_envelope("GS", e) for e in gs.get("errors", [])]
            for st in gs.get("transactions", []):
                out += [_envelope("ST", e) for e in st.get("errors", [])]
                for seg in st.get("segments", []):
                    out += _segment_problems(seg)
    return out


def _envelope(segment: str, error: dict[str, Any]) -> Problem:
    code = str(error.get("err_cde", ""))
    return Problem(segment, None, None, code, ENVELOPE_ERRORS.get(code, "envelope error"))


def _segment_problems(seg: dict[str, Any]) -> list[Problem]:
    id_, count = str(seg.get("seg_id", "")), seg.get("seg_count")
    out = [Problem(id_, count, None, str(e.get("err_cde")),
                   SEGMENT_ERRORS.get(str(e.get("err_cde")), "segment error"))
           for e in seg.get("errors", [])]
    for element in seg.get("elements", []):
        name = f"{id_}{int(element.get('ele_pos') or 0):02d}"
        if element.get("subele_pos"):
            name += f"-{element['subele_pos']}"
        out += [Problem(id_, count, name, str(e.get("err_cde")),
                        ELEMENT_ERRORS.get(str(e.get("err_cde")), "data element error"))
                for e in element.get("errors", [])]
    return out
