"""Amounts of money: exact decimals, refused when unusable, rounded half up to cents."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from fhir_server.core.errors import Unprocessable

CENT = Decimal("0.01")
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


def money(value: Any, currency: str, where: str = "") -> dict[str, Any]:
    return {"value": cents(decimal_of(value, where)), "currency": currency}
