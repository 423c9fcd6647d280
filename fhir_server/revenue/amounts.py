"""What a line bills: ONE amount for every way a claim leaves or is judged.

R4 defines an item's ``net`` as ``quantity`` x ``unitPrice`` x ``factor``. An item that
states its ``net`` bills that; otherwise the product is computed here, exactly, and
rounded half up to cents (``core/money``). Adjudication (this server as payer), the bill's
Claim and the 837P's ``SV102`` all use ``item_amount``, so a discounted line bills the
same over FHIR and over X12.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from fhir_server.core.money import cents, decimal_of

ZERO = Decimal(0)


def item_amount(item: Mapping[str, Any], where: str = "Claim.item") -> Decimal:
    """An item's amount in cents: its ``net``, else unitPrice x quantity x factor (a missing
    quantity or factor is 1, a missing unitPrice 0). A value that is not a usable number
    answers 422 naming the element."""
    net = (item.get("net") or {}).get("value")
    if net is not None:
        return cents(decimal_of(net, f"{where}.net"))
    unit = decimal_of((item.get("unitPrice") or {}).get("value", 0), f"{where}.unitPrice")
    quantity = decimal_of((item.get("quantity") or {}).get("value", 1), f"{where}.quantity")
    factor = decimal_of(item.get("factor", 1), f"{where}.factor")
    return cents(decimal_of(unit * quantity * factor, where))


def items_total(items: Iterable[Mapping[str, Any]], where: str = "Claim.item") -> Decimal:
    """The sum of the items' amounts."""
    return sum((item_amount(i, where) for i in items), ZERO)
