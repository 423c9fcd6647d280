"""An MLLP message over FHIR_MAX_BODY_BYTES is read past, not held, and answered AR with its
control id; the connection stays in step for the next message. One at the limit is taken."""

from __future__ import annotations

import httpx
import pytest

from tests.adapters.hl7v2.helpers import adt, field, mllp
from tests.adapters.hl7v2.test_adt import MRN_SYSTEM, count

LIMIT = 8 * 1024  # FHIR_MAX_BODY_BYTES: the largest message, bytes


@pytest.fixture
def settings_overrides(hl7_port: int) -> dict[str, object]:
    return {"fhir_hl7v2_port": hl7_port, "fhir_billing_provider": "Organization/clinic",
            "fhir_max_body_bytes": LIMIT}


def sized(size: int, *, mrn: str, control_id: str) -> str:
    """An A04 of exactly ``size`` bytes (UTF-8): its street padded to fit."""
    empty = len(adt("A04", mrn=mrn, visit="1", street="", control_id=control_id).encode())
    text = adt("A04", mrn=mrn, visit="1", street="x" * (size - empty), control_id=control_id)
    assert len(text.encode()) == size
    return text


async def patients(client: httpx.AsyncClient, text: str) -> int:
    return await count(client, "Patient", identifier=f"{MRN_SYSTEM}|{field(text, 'PID', 3)}")


async def test_a_message_at_the_limit_is_taken(port: int, client: httpx.AsyncClient) -> None:
    text = sized(LIMIT, mrn="L1", control_id="AT-LIMIT")
    async with mllp(port) as conn:
        ack = await conn.send(text)
    assert (ack.code, ack.control_id) == ("AA", "AT-LIMIT"), ack.text
    assert await patients(client, text) == 1


@pytest.mark.parametrize("size", [LIMIT + 1, 50 * LIMIT])
async def test_a_larger_message_is_rejected_and_the_connection_serves_on(
        port: int, client: httpx.AsyncClient, size: int) -> None:
    big = sized(size, mrn="L2", control_id="TOO-BIG")
    after = sized(LIMIT // 2, mrn="L3", control_id="NEXT")
    async with mllp(port) as conn:
        refused = await conn.send(big)
        taken = await conn.send(after)
    assert (refused.code, refused.control_id) == ("AR", "TOO-BIG"), refused.text
    assert any(f"larger than {LIMIT} bytes" in e and "FHIR_MAX_BODY_BYTES" in e
               for e in refused.errors), refused.errors
    assert refused.value("MSH", 5) == field(big, "MSH", 3)  # answered as its MSH says
    assert (taken.code, taken.control_id) == ("AA", "NEXT"), taken.text
    assert await patients(client, big) == 0
    assert await patients(client, after) == 1
