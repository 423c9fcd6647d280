"""A message whose MSH is short or odd still gets its own acknowledgement (found by
mutating messages): the ACK's MSH mirrors what the MSH has, MSA-2 echoes MSH-10, and the
answer says what is wrong instead of 'internal error'."""

from __future__ import annotations

import httpx
import pytest

from tests.adapters.hl7v2.helpers import field, mllp, pid, pv1
from tests.adapters.hl7v2.test_adt import MRN_SYSTEM, count

BODY = ["EVN|A04|20260105093000", pid(mrn="H1"), pv1(visit="9")]


@pytest.mark.parametrize(("msh", "answer"), [
    # No MSH-11 (processing id) or MSH-12 (version).
    ("MSH|^~\\&|EPIC|GENHOSP|RCM|CLINIC|20260105093000||ADT^A04^ADT_A01|CTRL-1", "AA"),
    # A message type without its trigger event.
    ("MSH|^~\\&|EPIC|GENHOSP|RCM|CLINIC|20260105093000||ADT|CTRL-2|P|2.5.1", "AR"),
    # Nothing after MSH-10.
    ("MSH|^~\\&|||||||ADT^A04|CTRL-3", "AA"),
])
async def test_a_short_msh_is_answered_with_its_own_control_id(
        port: int, client: httpx.AsyncClient, msh: str, answer: str) -> None:
    text = "\r".join([msh, *BODY]) + "\r"
    async with mllp(port) as conn:
        ack = await conn.send(text)
    assert ack.code == answer, ack.text
    assert ack.control_id == field(text, "MSH", 10)
    assert not any("207^" in e for e in ack.errors), ack.errors  # not an internal error
    assert ack.value("MSH", 5) == field(text, "MSH", 3)  # sender and receiver swapped
    assert ack.value("MSH", 3) == field(text, "MSH", 5)
    mrn = field(text, "PID", 3)
    taken = await count(client, "Patient", identifier=f"{MRN_SYSTEM}|{mrn}")
    assert taken == (1 if answer == "AA" else 0)


async def test_a_segment_name_with_a_space_is_answered(port: int,
                                                       client: httpx.AsyncClient) -> None:
    """'PV1 |...' is read as a PV1 whose fields python-hl7 cannot find: its visit number
    is missing (AE naming PV1-19), not an internal error."""
    text = "\r".join(["MSH|^~\\&|EPIC|GENHOSP|RCM|CLINIC|20260105093000||ADT^A04^ADT_A01|"
                      "CTRL-4|P|2.5.1", BODY[0], BODY[1], BODY[2].replace("PV1|", "PV1 |", 1)])
    async with mllp(port) as conn:
        ack = await conn.send(text + "\r")
    assert ack.code == "AE", ack.text
    assert ack.control_id == "CTRL-4"
    assert any("|PV1^1^19^1|101^" in e for e in ack.errors), ack.errors
    assert await count(client, "Patient") == 0
