"""The query model's pure functions: one search value of each parameter type becomes a
query node (``search/values.py``), with FHIR's rules for prefixes, precision and
modifiers. No database; the expected nodes are built from the inputs by those rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fhir_server.core.errors import Invalid
from fhir_server.search import values as v
from fhir_server.search.dates import date_range
from fhir_server.search.normalize import ANY_SYSTEM, decimal_range, fold, key, token_keys
from fhir_server.search.parse import parse_criterion, prefix_of, split_unescaped, split_values
from fhir_server.search.query import (
    AllOf,
    AnyOf,
    Cmp,
    Contains,
    Element,
    HierarchyCodes,
    Keys,
    KeysInSet,
    NoKeys,
    Or,
    Prefix,
    Updated,
    ValueSetCodes,
    and_,
)

# -- parsing --------------------------------------------------------------------------------


def test_values_split_on_unescaped_commas_only() -> None:
    assert split_values(r"a,b\,c,d\\") == ["a", r"b\,c", "d\\\\"]
    assert split_unescaped(r"x\|y|z", "|") == ["x|y", "z"]


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
def test_every_prefix_is_read_before_a_number_or_date(prefix: str) -> None:
    assert prefix_of(f"{prefix}2024") == (prefix, "2024")
    assert prefix_of(f"{prefix}-1.5") == (prefix, "-1.5")
    assert prefix_of(f"{prefix}x") == ("eq", f"{prefix}x")  # not a prefix before a letter


def test_a_criterion_has_its_modifier_chain_and_has() -> None:
    c = parse_criterion("subject:Patient.name", "ann,bob")
    assert (c.name, c.modifier, c.chain, c.values) == ("subject", "Patient", "name", ("ann", "bob"))
    h = parse_criterion("_has:Observation:subject:code", "1234")
    assert (h.name, h.has) == ("_has", ("Observation", "subject", "code"))


# -- token ----------------------------------------------------------------------------------

def test_token_forms() -> None:
    sys_ = "http://loinc.org"
    assert v.token("code", None, [f"{sys_}|8867-4"]) == Keys("tk", (key("code", sys_, "8867-4"),))
    assert v.token("code", None, ["8867-4"]) == Keys("tk", (key("code", ANY_SYSTEM, "8867-4"),))
    assert v.token("code", None, [f"{sys_}|"]) == Keys("tk", (key("code", sys_, ""),))
    assert v.token("code", None, ["|8867-4"]) == Keys("tk", (key("code", "", "8867-4"),))
    assert v.token("code", "not", ["a", "b"]) == NoKeys("tk", (key("code", "*", "a"),
                                                              key("code", "*", "b")))


def test_token_keys_stored_are_the_keys_searched() -> None:
    """What extraction stores for a coding is what each query form asks for."""
    stored = set(token_keys("code", "http://s", "c"))
    for query in ("http://s|c", "c", "http://s|"):
        node = v.token("code", None, [query])
        assert isinstance(node, Keys) and set(node.keys) <= stored


def test_token_text_of_type_and_terminology_modifiers() -> None:
    assert v.token("code", "text", ["Héart Rate"]) == Prefix("tt", key("code", fold("Héart Rate")))
    assert v.token("identifier", "of-type", ["http://t|MR|123"]) == Keys(
        "ot", (key("identifier", "http://t", "MR", "123"),))
    with pytest.raises(Invalid):
        v.token("identifier", "of-type", ["MR|123"])
    assert v.token("code", "in", ["http://vs"]) == KeysInSet("tk", "code", ValueSetCodes("http://vs"))
    not_in = v.token("code", "not-in", ["http://a", "http://b"])
    assert not_in == and_(KeysInSet("tk", "code", ValueSetCodes("http://a"), negate=True),
                         KeysInSet("tk", "code", ValueSetCodes("http://b"), negate=True))
    assert v.token("code", "below", ["http://s|a|b"]) == KeysInSet(
        "tk", "code", HierarchyCodes("http://s", "a|b", below=True))
    with pytest.raises(Invalid):
        v.token("code", "above", ["justacode"])
    with pytest.raises(Invalid):
        v.token("code", "exact", ["x"])


# -- string and uri -------------------------------------------------------------------------

def test_strings_fold_case_and_accents_except_exact() -> None:
    assert v.string("family", None, ["MÜLLER"]) == Prefix("st", key("family", "muller"))
    assert v.string("family", "exact", [r"Smith\, Jr"]) == Keys("sx", (key("family", "Smith, Jr"),))
    assert v.string("family", "contains", ["ÜLL"]) == Contains("st", key("family", ""), "ull")
    assert v.string("family", None, ["a", "b"]) == Or((Prefix("st", key("family", "a")),
                                                      Prefix("st", key("family", "b"))))


def test_uri_below_and_above() -> None:
    url = "http://x.org/fhir/ValueSet/a"
    assert v.uri("url", "below", ["http://x.org/fhir"]) == Prefix("ur", key("url", "http://x.org/fhir"))
    above = v.uri("url", "above", [url])
    ancestors = [url.rsplit("/", n)[0] for n in range(4)]  # the url and each parent path
    assert above == Keys("ur", tuple(key("url", u) for u in ancestors))


# -- reference ------------------------------------------------------------------------------

def test_reference_forms() -> None:
    base = "http://testserver/fhir"
    one = v.reference("subject", None, ["Patient/1", f"{base}/Patient/2"], targets=("Patient",),
                      base_url=base)
    assert one == Keys("rf", (key("subject", "Patient/1"), key("subject", "Patient/2")))
    bare = v.reference("subject", None, ["7"], targets=("Group", "Patient"), base_url=base)
    assert bare == Keys("rf", (key("subject", "Group/7"), key("subject", "Patient/7")))
    typed = v.reference("subject", "Patient", ["7"], targets=("Group", "Patient"), base_url=base)
    assert typed == Keys("rf", (key("subject", "Patient/7"),))
    ident = v.reference("subject", "identifier", ["urn:mrn|42"], targets=(), base_url=base)
    assert ident == Keys("ri", (key("subject", "urn:mrn", "42"),))


# -- dates ----------------------------------------------------------------------------------

def _day(text: str) -> tuple[datetime, datetime]:
    return date_range(text)


def test_a_date_means_the_range_of_its_precision() -> None:
    lo, hi = _day("2024")
    assert (lo, hi) == (datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    lo, hi = _day("2024-02")
    assert hi - lo == timedelta(days=29)  # a leap year's February
    lo, hi = _day("2024-03-05T10:00:00+02:00")
    assert lo == datetime(2024, 3, 5, 8, tzinfo=UTC) and hi - lo == timedelta(seconds=1)


@pytest.mark.parametrize(("prefix", "stored", "holds"), [
    ("eq", ("2024-03-05", "2024-03-06"), True), ("eq", ("2024-03-04", "2024-03-06"), False),
    ("ne", ("2024-03-04", "2024-03-06"), True), ("ne", ("2024-03-05", "2024-03-06"), False),
    ("gt", ("2024-03-01", "2024-03-07"), True), ("gt", ("2024-03-01", "2024-03-06"), False),
    ("lt", ("2024-03-04", "2024-03-10"), True), ("lt", ("2024-03-05", "2024-03-10"), False),
    ("ge", ("2024-03-05", "2024-03-06"), True), ("ge", ("2024-03-01", "2024-03-05"), False),
    ("le", ("2024-03-05", "2024-03-06"), True), ("le", ("2024-03-06", "2024-03-07"), False),
    ("sa", ("2024-03-06", "2024-03-07"), True), ("sa", ("2024-03-05", "2024-03-07"), False),
    ("eb", ("2024-03-01", "2024-03-05"), True), ("eb", ("2024-03-01", "2024-03-06"), False),
    ("ap", ("2024-03-05", "2024-03-06"), True), ("ap", ("1990-01-01", "1990-01-02"), False),
])
def test_date_prefixes(prefix: str, stored: tuple[str, str], holds: bool) -> None:
    """The searched day 2024-03-05 against a stored range [lo, hi) (days, hi exclusive)."""
    from fhir_server.search.evaluate import satisfies

    lo, hi = _day("2024-03-05")
    cond = v.date_condition(prefix, lo, hi)
    element = {"lo": _day(stored[0])[0], "hi": _day(stored[1])[0]}
    assert satisfies(element, cond) is holds


def test_last_updated_compares_the_version_instant() -> None:
    lo, hi = _day("2024-03-05")
    assert v.last_updated(["gt2024-03-05"]) == Updated(Cmp("ts", "ge", hi))
    assert v.last_updated(["2024-03-05"]) == Updated(AllOf((Cmp("ts", "ge", lo),
                                                           Cmp("ts", "lt", hi))))


# -- numbers and quantities ------------------------------------------------------------------

def test_a_number_means_the_range_of_its_precision() -> None:
    for text in ("100", "1.50", "0.001", "2e2"):
        value = Decimal(text)
        half = Decimal(5).scaleb(value.as_tuple().exponent - 1)  # type: ignore[operator]
        assert decimal_range(value) == (value - half, value + half)
    lo, hi = decimal_range(Decimal("100"))
    assert v.number("p", ["100"]) == Element("nm", "p", AllOf((Cmp("v", "ge", float(lo)),
                                                               Cmp("v", "lt", float(hi)))))
    assert v.number("p", ["ge100"]) == Element("nm", "p", Cmp("v", "ge", 100.0))
    ne = v.number_condition("ne", Decimal("100"))
    assert ne == AnyOf((Cmp("v", "lt", float(lo)), Cmp("v", "ge", float(hi))))
    ap = v.number_condition("ap", Decimal("100"))
    assert ap == AllOf((Cmp("v", "ge", 90.0), Cmp("v", "le", 110.0)))
    with pytest.raises(Invalid):
        v.number("p", ["NaN"])


def test_quantity_system_code_and_unit() -> None:
    number = v.number_condition("gt", Decimal("5.4"))
    assert v.quantity_condition("q", "gt5.4|http://unitsofmeasure.org|mg") == AllOf((
        number, Cmp("s", "eq", "http://unitsofmeasure.org"), Cmp("c", "eq", "mg")))
    assert v.quantity_condition("q", "gt5.4||mg") == AllOf((
        number, AnyOf((Cmp("c", "eq", "mg"), Cmp("u", "eq", "mg")))))
    assert v.quantity_condition("q", "gt5.4") == number
    with pytest.raises(Invalid):
        v.quantity_condition("q", "5.4|mg")
