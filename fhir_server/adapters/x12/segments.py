"""X12 text: writing segments and interchanges, and reading them back with envelope checks.

The writer is this project's own (a few lines): pyx12's ``X12Writer`` writes segment
objects one at a time to a file and leaves the envelope's counts and control numbers to
the caller, which is the part that must be right; here an interchange is built whole,
with its ISA fixed widths, SE/GE/IEA counts and control numbers computed, and what it
wrote is validated with pyx12 against the 5010 maps in the tests.

The reader splits an interchange into groups and transaction sets and checks the
envelope (ISA/IEA, GS/GE, ST/SE control numbers and counts); any problem is an
``X12Error`` naming the segment, its position (1-based, counted from ISA) and, when
it is one element, the element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

ELEMENT = "*"
COMPONENT = ":"
REPETITION = "^"
TERMINATOR = "~"
ISA_LENGTH = 106
# ISA01..ISA16 widths (ISA11 is the repetition separator, ISA16 the component separator).
ISA_WIDTHS = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)
# Characters outside X12's extended character set, and the delimiters, never reach a value.
_UNSAFE = re.compile(r"[^A-Za-z0-9 !\"&'()+,\-./;?=%@\[\]_{}\\|<>#$]")

Element = str | tuple[str, ...] | None  # a simple element, a composite, or absent


class X12Error(Exception):
    """Bad X12: what is wrong, in which segment, at which position."""

    def __init__(self, message: str, *, segment: str | None = None, position: int | None = None,
                 element: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.segment = segment
        self.position = position
        self.element = element

    @property
    def where(self) -> str:
        """``CLP`` segment 14, element 4 (as an OperationOutcome location)."""
        if self.segment is None:
            return "interchange"
        out = f"{self.segment} segment {self.position}" if self.position else self.segment
        return f"{out}, element {self.element}" if self.element else out


def clean(value: object) -> str:
    """A value as X12 may carry it: delimiters and characters X12 cannot carry become spaces."""
    return _UNSAFE.sub(" ", str(value)).strip()


def segment(id_: str, *elements: Element) -> str:
    """One segment's text (without terminator); trailing absent elements are left out."""
    parts = [id_]
    for element in elements:
        if element is None:
            parts.append("")
        elif isinstance(element, tuple):
            components = [clean(c) if c is not None else "" for c in element]
            while components and not components[-1]:
                components.pop()
            parts.append(COMPONENT.join(components))
        else:
            parts.append(clean(element))
    while len(parts) > 1 and not parts[-1]:
        parts.pop()
    return ELEMENT.join(parts)


@dataclass(frozen=True)
class Envelope:
    """Who sends to whom, and how the interchange is numbered."""

    sender: str  # ISA06 / GS02
    receiver: str  # ISA08 / GS03
    usage: str  # ISA15: T (test) or P (production)
    control: int  # ISA13 = GS06 = ST02 (one group, one transaction set per interchange)
    functional_id: str  # GS01: HC (837), HS (270), HB (271), FA (999), HN (277), HP (835)
    version: str  # GS08 / ST03: 005010X222A1, ...
    at: datetime
    sender_qualifier: str = "ZZ"
    receiver_qualifier: str = "ZZ"


def interchange(envelope: Envelope, set_id: str, body: list[str]) -> str:
    """A whole interchange: ISA, GS, ST, the body, SE, GE, IEA, with counts and numbers."""
    number = envelope.control % 1_000_000_000
    isa_values = ("00", "", "00", "", envelope.sender_qualifier, clean(envelope.sender),
                  envelope.receiver_qualifier, clean(envelope.receiver),
                  envelope.at.strftime("%y%m%d"), envelope.at.strftime("%H%M"), REPETITION,
                  "00501", f"{number:09d}", "0", envelope.usage, COMPONENT)
    isa = ELEMENT.join(["ISA", *(v.ljust(w)[:w] for v, w in zip(isa_values, ISA_WIDTHS,
                                                                   strict=True))])
    st_control = f"{number:04d}"
    segments = [
        isa,
        segment("GS", envelope.functional_id, envelope.sender, envelope.receiver,
                envelope.at.strftime("%Y%m%d"), envelope.at.strftime("%H%M"), str(number), "X",
                envelope.version),
        segment("ST", set_id, st_control, envelope.version),
        *body,
    ]
    segments.append(segment("SE", str(len(body) + 2), st_control))
    segments += [segment("GE", "1", str(number)), segment("IEA", "1", f"{number:09d}")]
    return TERMINATOR.join(segments) + TERMINATOR + "\n"


@dataclass
class Segment:
    """A segment read: its id, its elements (index 1 = the first), its position from ISA."""

    elements: list[str]
    position: int
    component: str = COMPONENT
    repetition: str = REPETITION

    @property
    def id(self) -> str:
        return self.elements[0]

    def get(self, index: int) -> str:
        return self.elements[index] if index < len(self.elements) else ""

    def parts(self, index: int) -> list[str]:
        """The components of a composite element."""
        value = self.get(index)
        return value.split(self.component) if value else []

    def error(self, message: str, element: int | None = None) -> X12Error:
        return X12Error(message, segment=self.id, position=self.position, element=element)


@dataclass
class Transaction:
    set_id: str  # ST01
    control: str  # ST02
    version: str  # ST03
    segments: list[Segment]  # from the segment after ST to the one before SE


@dataclass
class Group:
    functional_id: str  # GS01
    sender: str
    receiver: str
    control: str
    version: str
    transactions: list[Transaction] = field(default_factory=list)


@dataclass
class Interchange:
    sender: str  # ISA06, trimmed
    receiver: str  # ISA08, trimmed
    control: str  # ISA13
    usage: str  # ISA15
    groups: list[Group] = field(default_factory=list)

    def transactions(self) -> list[Transaction]:
        return [t for g in self.groups for t in g.transactions]


def split(text: str) -> list[Segment]:
    """The segments of an interchange, delimiters taken from its ISA."""
    text = text.lstrip("\ufeff \r\n\t")
    if not text.startswith("ISA") or len(text) < ISA_LENGTH:
        raise X12Error("Not an X12 interchange: it must start with a 106-character ISA segment",
                       segment="ISA", position=1)
    element, component, terminator = text[3], text[104], text[105]
    repetition = text[82]
    if len({element, component, terminator}) != 3 or element.isalnum() or terminator.isalnum():
        raise X12Error("The ISA segment's delimiters are not usable", segment="ISA", position=1)
    out: list[Segment] = []
    for raw in text.split(terminator):
        raw = raw.strip("\r\n")
        if not raw.strip():
            continue
        out.append(Segment(raw.split(element), len(out) + 1, component, repetition))
    isa = out[0]
    if len(isa.elements) != 17:
        raise isa.error("The ISA segment must have 16 elements")
    for n, width in enumerate(ISA_WIDTHS, start=1):
        if len(isa.elements[n]) != width:
            raise isa.error(f"ISA{n:02d} must be {width} characters long", n)
    return out


def _count(seg: Segment, index: int, what: str) -> int:
    value = seg.get(index)
    if not value.isdigit():
        raise seg.error(f"{seg.id}{index:02d} must be the number of {what}", index)
    return int(value)


def parse(text: str) -> Interchange:
    """Read one interchange and check its envelope."""
    segments = split(text)
    isa = segments[0]
    result = Interchange(sender=isa.get(6).strip(), receiver=isa.get(8).strip(),
                         control=isa.get(13), usage=isa.get(15))
    if isa.get(12) != "00501":
        raise isa.error("Only version 00501 (5010) interchanges are read", 12)
    group: Group | None = None
    open_st: tuple[Segment, list[Segment]] | None = None
    closed = False
    for seg in segments[1:]:
        if closed:
            raise seg.error("Segment after the IEA trailer")
        if open_st is not None and seg.id != "SE":
            if seg.id in ("ST", "GS", "GE", "IEA", "ISA"):
                raise seg.error(f"{seg.id} inside transaction set {open_st[0].get(2)}: its SE "
                                "trailer is missing")
            open_st[1].append(seg)
            continue
        if seg.id == "GS":
            if group is not None:
                raise seg.error("GS inside a functional group: its GE trailer is missing")
            group = Group(seg.get(1), seg.get(2), seg.get(3), seg.get(6), seg.get(8))
        elif seg.id == "ST":
            if group is None:
                raise seg.error("ST outside a functional group")
            open_st = (seg, [])
        elif seg.id == "SE":
            if open_st is None or group is None:
                raise seg.error("SE without an ST")
            st, body = open_st
            if seg.get(2) != st.get(2):
                raise seg.error(f"SE02 does not match ST02 of the transaction set at segment "
                                f"{st.position}", 2)
            if _count(seg, 1, "segments") != len(body) + 2:
                raise seg.error(f"SE01 says {seg.get(1)} segments; the transaction set has "
                                f"{len(body) + 2}", 1)
            group.transactions.append(Transaction(st.get(1), st.get(2), st.get(3), body))
            open_st = None
        elif seg.id == "GE":
            if group is None:
                raise seg.error("GE without a GS")
            if seg.get(2) != group.control:
                raise seg.error("GE02 does not match GS06", 2)
            if _count(seg, 1, "transaction sets") != len(group.transactions):
                raise seg.error(f"GE01 says {seg.get(1)} transaction sets; the group has "
                                f"{len(group.transactions)}", 1)
            result.groups.append(group)
            group = None
        elif seg.id == "IEA":
            if group is not None:
                raise seg.error("IEA inside a functional group: its GE trailer is missing")
            if seg.get(2) != result.control:
                raise seg.error("IEA02 does not match ISA13", 2)
            if _count(seg, 1, "functional groups") != len(result.groups):
                raise seg.error(f"IEA01 says {seg.get(1)} functional groups; the interchange "
                                f"has {len(result.groups)}", 1)
            closed = True
        else:
            raise seg.error(f"Segment {seg.id[:3]} outside a transaction set")
    if not closed:
        last = segments[-1]
        raise X12Error("The interchange ends without its IEA trailer", segment=last.id,
                       position=last.position)
    return result
