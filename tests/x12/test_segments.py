"""The X12 segment writer and reader: envelopes, counts, control numbers, and where errors are."""

from __future__ import annotations

from datetime import datetime

import pytest

from fhir_server.adapters.payer import Partner
from fhir_server.adapters.x12.claim837 import write_837p
from fhir_server.adapters.x12.fhir_read import Missing
from fhir_server.adapters.x12.segments import Envelope, X12Error, clean, interchange, parse, segment
from fhir_server.adapters.x12.validate import validate

AT = datetime(2026, 3, 15, 9, 30)


def sample(control: int = 42) -> str:
    body = [segment("BHT", "0019", "00", "1", "20260315", "0930", "CH"), segment("LX", "1")]
    return interchange(Envelope(sender="CLINIC01", receiver="CH01", usage="T", control=control,
                                functional_id="HC", version="005010X222A1", at=AT), "837", body)


def test_written_envelope_reads_back_with_counts_and_numbers() -> None:
    text = sample()
    isa = text.split("~")[0]
    assert len(isa) + 1 == 106  # the fixed-width ISA with its terminator
    document = parse(text)
    assert (document.control, document.sender, document.receiver, document.usage) == \
        ("000000042", "CLINIC01", "CH01", "T")
    (group,) = document.groups
    assert (group.functional_id, group.control, group.version) == ("HC", "42", "005010X222A1")
    (transaction,) = group.transactions
    assert transaction.control == "0042"
    assert [s.id for s in transaction.segments] == ["BHT", "LX"]
    se = next(s for s in text.split("~") if s.startswith("SE*"))
    assert se == "SE*4*0042"  # ST, BHT, LX, SE


def test_values_cannot_break_out_of_their_element() -> None:
    assert clean("O*Brien~:^") == "O Brien"
    assert segment("NM1", "IL", "1", "A*B", None, None) == "NM1*IL*1*A B"
    assert segment("SV1", ("HC", "99213", None), "40") == "SV1*HC:99213*40"


@pytest.mark.parametrize(("change", "where"), [
    (("SE*4*0042", "SE*5*0042"), "SE segment 6, element 1"),
    (("SE*4*0042", "SE*4*0043"), "SE segment 6, element 2"),
    (("GE*1*42", "GE*2*42"), "GE segment 7, element 1"),
    (("GE*1*42", "GE*1*41"), "GE segment 7, element 2"),
    (("IEA*1*000000042", "IEA*1*000000043"), "IEA segment 8, element 2"),
    (("IEA*1*000000042~", ""), "GE segment 7"),
    (("LX*1~", "LX*1~SE*4*0042~LX*2~"), "LX segment 7"),
])
def test_envelope_errors_name_segment_position_and_element(change: tuple[str, str],
                                                           where: str) -> None:
    text = sample().replace(*change)
    with pytest.raises(X12Error) as raised:
        parse(text)
    assert raised.value.where == where


def test_isa_must_be_fixed_width() -> None:
    text = sample().replace("*CLINIC01       *", "*CLINIC01*", 1)
    with pytest.raises(X12Error) as raised:
        parse(text)
    assert raised.value.segment == "ISA"


def test_pyx12_problems_carry_codes_not_values() -> None:
    report = validate(sample().replace("SE*4*0042", "SE*9*0042"))
    assert not report.valid
    assert any(p.segment == "ST" and p.code == "4" for p in report.problems)


def test_an_837p_needs_what_the_guide_requires() -> None:
    claim = {"resourceType": "Claim", "contained": [
        {"resourceType": "Organization", "id": "org1", "name": "Clinic"}],
        "provider": {"reference": "#org1"}}
    with pytest.raises(Missing) as raised:
        write_837p(claim, control_system="urn:x", partner=Partner("A", "B", "T"), control=1,
                   at=AT)
    assert "telecom" in raised.value.expression[0]
