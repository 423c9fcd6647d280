"""Amounts of money: exact decimals, refused when unusable, rounded half up to cents (and
unit prices derived from an extended amount, half up to a hundredth of a cent)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from fhir_server.core.errors import Unprocessable

CENT = Decimal("0.01")
UNIT_PRICE_STEP = Decimal("0.0001")  # a unit price derived from a total keeps 4 places
MAX_AMOUNT = Decimal(10) ** 12  # amounts and quantities beyond this are refused


def decimal_of(value: Any, where: str = "") -> Decimal:
    """A finite decimal of sensible size, else a 422 naming where it came from."""
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        number = None
    if isinstance(value, bool) or number is None or not number.is_finite() \
            or abs(number) >= MAX_AMOUNT:
        raise Unprocessable(f"Not a usable amount: it must be a finite number below "
                            f"{MAX_AMOUNT:,.0f}", expression=[where] if where else [],
                            code="value")
    return number


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def unit_price(total: Decimal, quantity: Decimal) -> Decimal:
    """The price per unit of ``total`` for ``quantity`` units, half up to 4 places, without
    trailing zeros (100 / 2 -> 50, 100 / 3 -> 33.3333)."""
    unit = (total / quantity).quantize(UNIT_PRICE_STEP, rounding=ROUND_HALF_UP)
    return Decimal(format(unit.normalize(), "f"))


def money(value: Any, currency: str, where: str = "") -> dict[str, Any]:
    return {"value": cents(decimal_of(value, where)), "currency": currency}
