"""Acknowledgements (original mode): MSH, MSA (AA / AE / AR, MSA-2 = the message's
MSH-10) and, for an error, an ERR segment saying what (ERR-3, HL7 table 0357) and where
(ERR-2, segment^occurrence^field^repetition^component), with a user message (ERR-8)
that names locations and codes, never the message's content."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from fhir_server.adapters.hl7v2.message import V2Error, V2Message

# HL7 table 0357 (message error condition codes).
ERROR_TEXT = {"100": "Segment sequence error", "101": "Required field missing",
              "102": "Data type error", "103": "Table value not found",
              "200": "Unsupported message type", "201": "Unsupported event code",
              "203": "Unsupported version id", "204": "Unknown key identifier",
              "205": "Duplicate key identifier", "206": "Application record locked",
              "207": "Application internal error"}
WHERE = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+))?(?:\.(\d+))?")
_ESCAPE = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}


def escape(text: str) -> str:
    return "".join(_ESCAPE.get(c, c) for c in text.replace("\r", " ").replace("\n", " "))


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def err_segment(error: V2Error) -> str:
    m = WHERE.match(error.where or "")
    location = ""
    if m:
        segment, occurrence, field, component = m.groups()
        location = "^".join([segment, occurrence or "1", field or "", "1" if field else "",
                             component or ""]).rstrip("^")
    severity = "E"
    code = f"{error.code}^{ERROR_TEXT.get(error.code, 'Application error')}^HL70357"
    return f"ERR||{location}|{code}|{severity}||||{escape(error.text[:400])}"


def acknowledge(msg: V2Message, ack_code: str, errors: list[V2Error]) -> str:
    """The ACK of a parsed message, with ERR segments. Its MSH mirrors the message's
    (sending and receiving application and facility swapped, the trigger event, MSH-11
    and MSH-12 copied as sent) and MSA-2 is the message's MSH-10. Built from the MSH's
    fields as sent, so that a short or odd MSH still gets its answer (python-hl7's
    ``create_ack`` fails on an MSH without MSH-11 or a trigger component)."""
    return _answer(msg.msh_text, ack_code, errors)


def _answer(msh_text: str, ack_code: str, errors: list[V2Error]) -> str:
    fields = msh_text.split("|")

    def msh(number: int) -> str:  # fields[0] is "MSH" and MSH-1 the "|" itself
        return fields[number - 1] if number - 1 < len(fields) else ""

    trigger = msh(9).split("~")[0].split("^")
    header = "|".join(["MSH", "^~\\&", msh(5), msh(6), msh(3), msh(4), _stamp(), "",
                       f"ACK^{trigger[1] if len(trigger) > 1 else ''}^ACK",
                       uuid.uuid4().hex[:20], msh(11), msh(12)])
    return "\r".join([header, f"MSA|{ack_code}|{msh(10)}",
                      *(err_segment(e) for e in errors)]) + "\r"


def reject_unparsed(error: V2Error) -> str:
    """The AR of something that is not a message we could read: no MSA-2 to give."""
    return "\r".join([f"MSH|^~\\&|||||{_stamp()}||ACK|{uuid.uuid4().hex[:20]}|P|2.5.1",
                      "MSA|AR|", err_segment(error)]) + "\r"


def reject_header(head: bytes, error: V2Error) -> str:
    """The AR of a message read no further than ``head``, its first bytes: answered as its
    own MSH says (MSA-2 its control id) when ``head`` starts with a whole MSH segment."""
    msh, whole, _ = head.partition(b"\r")
    if not (whole and msh.startswith(b"\x0bMSH|")):  # no segment end: the MSH was cut
        return reject_unparsed(error)
    try:
        return _answer(msh[1:].decode("utf-8"), "AR", [error])
    except UnicodeDecodeError:
        return reject_unparsed(error)
