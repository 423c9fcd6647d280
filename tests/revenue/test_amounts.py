"""What a line bills (revenue/amounts.py) and the money rules under it (core/money.py)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from fhir_server.core.errors import Unprocessable
from fhir_server.core.money import MAX_AMOUNT, cents, decimal_of, money, unit_price
from fhir_server.revenue.amounts import item_amount, items_total

CENT = Decimal("0.01")


def half_up(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@pytest.mark.parametrize(("unit", "quantity", "factor"), [
    ("33.33", "3", "0.85"), ("100", "2", "1"), ("0.125", "1", "1"), ("19.99", "1.5", "0.9"),
    ("250", "4", "0.333")])
def test_an_item_without_net_bills_unit_times_quantity_times_factor(
        unit: str, quantity: str, factor: str) -> None:
    item = {"unitPrice": {"value": Decimal(unit), "currency": "USD"},
            "quantity": {"value": Decimal(quantity)}, "factor": Decimal(factor)}
    assert item_amount(item) == half_up(Decimal(unit) * Decimal(quantity) * Decimal(factor))


def test_net_wins_over_the_product() -> None:
    item = {"net": {"value": Decimal("80.005")}, "unitPrice": {"value": 100},
            "quantity": {"value": 1}, "factor": Decimal("0.5")}
    assert item_amount(item) == half_up(Decimal("80.005")) == Decimal("80.01")


def test_missing_parts_default_to_one_and_zero() -> None:
    assert item_amount({"unitPrice": {"value": "12.5"}}) == Decimal("12.50")
    assert item_amount({"quantity": {"value": 3}}) == Decimal(0)
    assert item_amount({"unitPrice": {"value": 7}, "factor": 2}) == Decimal(14)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", True, "ten", str(MAX_AMOUNT)])
def test_an_unusable_number_is_a_422_naming_the_element(bad: object) -> None:
    with pytest.raises(Unprocessable) as refused:
        item_amount({"unitPrice": {"value": 1}, "factor": bad}, "Claim.item[2]")
    assert refused.value.status == 422
    assert list(refused.value.expression) == ["Claim.item[2].factor"]


def test_items_total_is_the_sum_of_rounded_items() -> None:
    items = [{"unitPrice": {"value": "0.005"}}, {"unitPrice": {"value": "0.005"}}]
    assert items_total(items) == 2 * half_up(Decimal("0.005")) == Decimal("0.02")
    assert items_total([]) == 0


def test_money_rounds_half_up_to_cents() -> None:
    for text in ("0.005", "0.015", "2.675", "-0.005", "10"):
        assert cents(Decimal(text)) == half_up(Decimal(text))
    assert money("2.675", "USD") == {"value": Decimal("2.68"), "currency": "USD"}
    assert decimal_of(Decimal("1.10")) == Decimal("1.10")
    with pytest.raises(Unprocessable):
        money(None, "USD", "Invoice.totalGross")


@pytest.mark.parametrize(("total", "quantity"), [("100", "3"), ("100", "2"), ("0.00005", "1"),
                                                 ("10", "7")])
def test_unit_price_from_an_extended_amount(total: str, quantity: str) -> None:
    expected = (Decimal(total) / Decimal(quantity)).quantize(Decimal("0.0001"),
                                                             rounding=ROUND_HALF_UP)
    got = unit_price(Decimal(total), Decimal(quantity))
    assert got == expected
    assert "E" not in str(got) and not (str(got).endswith("0") and "." in str(got))
