"""``ChargeItemDefinition/[id]/$apply`` (R4): the price of a ChargeItem by one price-list entry.

The ChargeItem (a reference to one stored here, which the caller may read) is
priced by the definition exactly as ``Invoice/$generate-bill`` prices a service
(``terminology.pricelist.price_line``: the same applicability rules, components,
rounding and checks), and the answer is what that bill's Invoice would hold for
it: a draft Invoice, not stored, with one line (its price components), totalNet
and totalGross in ``FHIR_BILLING_CURRENCY``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server.core.errors import NotFound, Unprocessable
from fhir_server.core.money import decimal_of, money
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.operations.common import now_instant
from fhir_server.revenue.records import LOCAL_REF, read_local
from fhir_server.revenue.states import InvoiceStatus, transition
from fhir_server.terminology.pricelist import line_item, matches_code, price_line

CHARGE_ITEM = "Parameters.parameter.where(name='chargeItem')"


async def _charge_item(call: Call) -> dict[str, Any]:
    reference = (call.one("chargeItem") or {}).get("reference")
    match = LOCAL_REF.match(reference) if isinstance(reference, str) else None
    if not match or match.group(1) != "ChargeItem":
        raise Unprocessable("chargeItem must reference a ChargeItem (ChargeItem/id)",
                            expression=[CHARGE_ITEM])
    await call.check(type_="ChargeItem", interaction="read", id_=match.group(2))
    item = await read_local(call.repo, str(reference))
    if item is None or not await call.may_see("ChargeItem", item):
        raise Unprocessable(f"{reference} is not a ChargeItem on this server",
                            expression=[CHARGE_ITEM], code="not-found")
    return item


async def run(call: Call) -> dict[str, Any]:
    assert call.id_ is not None
    definition = await read_local(call.repo, f"ChargeItemDefinition/{call.id_}")
    if definition is None:
        raise NotFound(f"ChargeItemDefinition/{call.id_} is not known")
    item = await _charge_item(call)
    call.concerns((item.get("subject") or {}).get("reference"))
    codings = (item.get("code") or {}).get("coding") or []
    if not any(isinstance(c, dict) and isinstance(c.get("code"), str)
               and matches_code(definition, c.get("system"), c["code"]) for c in codings):
        raise Unprocessable("The ChargeItem's code is not one this ChargeItemDefinition prices",
                            expression=[CHARGE_ITEM])
    if definition.get("status") != "active":
        raise Unprocessable("The ChargeItemDefinition is not active", code="business-rule",
                            expression=["ChargeItemDefinition.status"])
    quantity = decimal_of((item.get("quantity") or {}).get("value", 1), "ChargeItem.quantity")
    if quantity <= Decimal(0):
        raise Unprocessable("The ChargeItem's quantity must be more than 0",
                            expression=["ChargeItem.quantity"])
    currency = call.settings.fhir_billing_currency
    line = price_line(definition, quantity=quantity, charge_item=item, currency=currency,
                      where=CHARGE_ITEM)
    invoice: dict[str, Any] = {
        "resourceType": "Invoice", "status": transition("Invoice", None, InvoiceStatus.DRAFT),
        "date": now_instant(),
        "lineItem": [line_item(1, f"ChargeItem/{item['id']}", line, currency)],
        "totalNet": money(line.net, currency), "totalGross": money(line.gross, currency),
    }
    if isinstance(item.get("subject"), dict):
        invoice["subject"] = item["subject"]
    if call.params.get("account"):
        invoice["account"] = call.one("account")
    return invoice


APPLY = Operation(
    id="ChargeItemDefinition-apply", code="apply", title="Apply a price-list entry",
    description="Prices a ChargeItem with this ChargeItemDefinition exactly as "
    "Invoice/$generate-bill does, and returns the draft Invoice (not stored) with its line's "
    "price components, totalNet and totalGross.",
    resource=("ChargeItemDefinition",), type_level=False, instance=True, affects_state=False,
    base="http://hl7.org/fhir/OperationDefinition/ChargeItemDefinition-apply",
    requires=(("ChargeItem", "r"),),
    parameters=(
        Param("chargeItem", "in", 1, "1", "Reference", "The ChargeItem to price"),
        Param("account", "in", 0, "1", "Reference", "The account in context"),
        Param("return", "out", 1, "1", "Invoice", "A draft Invoice with the priced line"),
    ),
    run=run)
