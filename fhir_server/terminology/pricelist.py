"""The clinic's price list: ChargeItemDefinition resources, and pricing a service with one.

A service code is priced by the active ChargeItemDefinition whose ``code`` has
that system and code. Its ``propertyGroup``s apply when every ``applicability``
FHIRPath expression (``text/fhirpath``) is true on the ChargeItem being billed;
their price components are, per the R4 ``invoice-priceComponentType`` codes:

* ``base``: the unit price (``amount``), times the quantity;
* ``surcharge`` / ``discount`` / ``deduction``: an ``amount`` per unit, or a
  ``factor`` of the base; added (surcharge) or subtracted;
* ``tax``: an ``amount`` per unit or a ``factor`` of the net (base, surcharges,
  discounts and deductions);
* ``informational``: shown, not counted.

``totalNet`` is the base plus surcharges less discounts and deductions; ``totalGross``
adds tax. Amounts are kept exact (Decimal) and rounded to cents when written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import fhirpathpy

from fhir_server.core.errors import Unprocessable
from fhir_server.core.money import cents, decimal_of, money

SUBTRACTED = ("discount", "deduction")


@dataclass
class Priced:
    """A priced line: its components (for Invoice.lineItem.priceComponent) and totals."""

    components: list[dict[str, Any]] = field(default_factory=list)
    net: Decimal = Decimal(0)
    gross: Decimal = Decimal(0)


def matches_code(definition: dict[str, Any], system: str | None, code: str) -> bool:
    for coding in (definition.get("code") or {}).get("coding") or []:
        if coding.get("code") == code and (system is None or coding.get("system") == system):
            return True
    return False


def _applies(entries: list[dict[str, Any]], item: dict[str, Any], where: str) -> bool:
    for entry in entries:
        expression = entry.get("expression")
        if not expression:
            continue
        if entry.get("language", "text/fhirpath") != "text/fhirpath":
            raise Unprocessable(f"{where}: only text/fhirpath applicability is supported",
                                expression=[where])
        try:
            result = fhirpathpy.evaluate(item, expression)
        except Exception:
            raise Unprocessable(f"{where}: the applicability expression cannot be evaluated",
                                expression=[where]) from None
        if result != [True]:
            return False
    return True


def price_with_definition(definition: dict[str, Any], *, quantity: Decimal,
                          charge_item: dict[str, Any], currency: str) -> Priced:
    url = str(definition.get("url") or f"ChargeItemDefinition/{definition.get('id')}")
    if not _applies(definition.get("applicability") or [], charge_item, url):
        raise Unprocessable(f"{url} does not apply to this service",
                            expression=["ChargeItemDefinition.applicability"])
    components: list[dict[str, Any]] = []
    for g, group in enumerate(definition.get("propertyGroup") or []):
        if _applies(group.get("applicability") or [], charge_item, f"{url} propertyGroup[{g}]"):
            components.extend(group.get("priceComponent") or [])
    for c in components:
        amount = c.get("amount")
        if isinstance(amount, dict) and amount.get("currency") not in (None, currency):
            raise Unprocessable(f"{url} prices in {amount.get('currency')}, bills are in "
                                f"{currency}", expression=["ChargeItemDefinition.propertyGroup"])
    bases = [c for c in components if c.get("type") == "base"]
    if not bases or any((c.get("amount") or {}).get("value") is None for c in bases):
        raise Unprocessable(f"{url} has no base price amount for this service",
                            expression=["ChargeItemDefinition.propertyGroup.priceComponent"])
    return compute(components, quantity=quantity)


def price_given(unit_price: Decimal, *, quantity: Decimal) -> Priced:
    return compute([{"type": "base", "amount": {"value": unit_price}}], quantity=quantity)


def _number(value: Any) -> Decimal:
    return decimal_of(value, "ChargeItemDefinition.propertyGroup.priceComponent")


def _line_amount(component: dict[str, Any], of: Decimal, quantity: Decimal) -> Decimal:
    amount = component.get("amount")
    if isinstance(amount, dict) and amount.get("value") is not None:
        return _number(_number(amount["value"]) * quantity)
    return _number(_number(component.get("factor", 0)) * of)


def compute(components: list[dict[str, Any]], *, quantity: Decimal) -> Priced:
    """The priced line (raises 422 when an amount or a result is unusable)."""
    out = Priced()
    base = _number(sum((_number(c["amount"]["value"]) * quantity
                        for c in components if c.get("type") == "base"), Decimal(0)))
    net = base
    for c in components:
        kind = c.get("type")
        if kind == "base":
            amount = _number(_number(c["amount"]["value"]) * quantity)
        elif kind == "surcharge":
            amount = _line_amount(c, base, quantity)
            net += amount
        elif kind in SUBTRACTED:
            amount = _line_amount(c, base, quantity)
            net -= amount
        elif kind == "informational":
            amount = _line_amount(c, base, quantity)
        else:
            continue  # tax: after the net is known
        out.components.append(_component(c, amount))
    tax = Decimal(0)
    for c in components:
        if c.get("type") == "tax":
            amount = _line_amount(c, net, quantity)
            tax += amount
            out.components.append(_component(c, amount))
    out.net, out.gross = _number(net), _number(net + tax)
    return out


def _component(source: dict[str, Any], amount: Decimal) -> dict[str, Any]:
    out: dict[str, Any] = {"type": source["type"]}
    if source.get("code"):
        out["code"] = source["code"]
    if source.get("factor") is not None:
        out["factor"] = source["factor"]
    out["amount"] = {"value": amount}
    return out


def rounded(priced: Priced) -> Priced:
    """Components rounded to cents (half up), and totals summed from the rounded amounts."""
    out = Priced()
    for c in priced.components:
        amount = cents(decimal_of(c["amount"]["value"], "ChargeItemDefinition.propertyGroup"))
        out.components.append({**c, "amount": {"value": amount}})
        kind = c["type"]
        if kind in ("base", "surcharge"):
            out.net += amount
        elif kind in SUBTRACTED:
            out.net -= amount
        elif kind == "tax":
            out.gross += amount
    out.gross += out.net
    return out


def price_line(definition: dict[str, Any] | None, *, quantity: Decimal,
               charge_item: dict[str, Any], currency: str, where: str,
               unit_price: Decimal | None = None) -> Priced:
    """The priced, rounded line of one service: by a ChargeItemDefinition (its
    applicability judged on ``charge_item``), or at a given unit price. The one pricing
    path of ``Invoice/$generate-bill`` and ``ChargeItemDefinition/$apply``."""
    if definition is None:
        assert unit_price is not None
        priced = price_given(unit_price, quantity=quantity)
    else:
        priced = price_with_definition(definition, quantity=quantity, charge_item=charge_item,
                                       currency=currency)
    line = rounded(priced)
    if line.net < 0 or line.gross < 0:
        code = ((charge_item.get("code") or {}).get("coding") or [{}])[0].get("code", "")
        raise Unprocessable(f"Service code '{str(code)[:64]}' is priced below zero",
                            expression=[where])
    return line


def line_item(sequence: int, charge_item_ref: str, line: Priced, currency: str) -> dict[str, Any]:
    """An Invoice.lineItem of a priced line."""
    return {"sequence": sequence, "chargeItemReference": {"reference": charge_item_ref},
            "priceComponent": [{**pc, "amount": money(pc["amount"]["value"], currency)}
                               for pc in line.components]}
