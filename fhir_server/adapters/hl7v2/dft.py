"""DFT^P03 (post detail financial transactions): one ChargeItem per FT1, for the visit
of PV1 and the patient of PID, so that the visit's bill (``$generate-bill``, or the bill
written when the Encounter finishes) charges them.

FT1 -> ChargeItem: FT1-2 transaction id (else MSH-10 and FT1-1) -> identifier (it finds
the charge again, so a resent message adds nothing); FT1-4 transaction date ->
occurrenceDateTime; FT1-5 posting date -> enteredDate; FT1-6 type (CG charge only);
FT1-7 transaction code (else FT1-25 procedure code) -> code; FT1-10 quantity (default
1); FT1-12 unit amount (else FT1-11 extended amount / quantity) -> priceOverride;
FT1-20 performed by -> performer. A charge without an amount must be priced by the
price list (an active ChargeItemDefinition with its code), checked on arrival.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server.adapters.hl7v2 import segments
from fhir_server.adapters.hl7v2.message import Segment, V2Error, V2Message, codeable, decimal_text, dtm
from fhir_server.adapters.upsert import Wanted
from fhir_server.core.config import Settings
from fhir_server.core.money import unit_price

CHARGE = "CG"


def map_dft(msg: V2Message, settings: Settings) -> tuple[segments.Mapped, list[tuple[str, Any]]]:
    """The resources, and the (FT1 location, code) of charges the price list must price."""
    mapped = segments.Mapped()
    patient = segments.patient(msg, mapped)
    visit = segments.encounter(msg, mapped, patient, status=None)
    charges = msg.all("FT1")
    if not charges:
        raise V2Error("A DFT^P03 needs at least one FT1 segment", where="FT1", code="100")
    unpriced = []
    for n, ft1 in enumerate(charges, 1):
        item, needs_price = _charge(msg, ft1, n, settings, patient, visit, mapped)
        if needs_price:
            unpriced.append((f"FT1[{n}]-7", item["code"]["coding"][0]))
    return mapped, unpriced


def _charge(msg: V2Message, ft1: Segment, n: int, settings: Settings, patient: str,
            visit: str, mapped: segments.Mapped) -> tuple[dict[str, Any], bool]:
    kind = ft1.at(6) or CHARGE
    if kind != CHARGE:
        raise V2Error("FT1-6: only charges (CG) are taken; credits, payments and "
                      "adjustments are not", where=f"FT1[{n}]-6", code="103")
    code = codeable(ft1, 7) or codeable(ft1, 25)
    if code is None or not code.get("coding"):
        raise V2Error("FT1-7 (transaction code) is required", where=f"FT1[{n}]-7", code="101")
    txn = ft1.at(2)
    system = f"urn:hl7v2:transaction:{segments.local_authority(msg)}"
    value = txn or f"{msg.control_id}-{ft1.at(1) or n}"
    quantity = Decimal(decimal_text(ft1.at(10), f"FT1[{n}]-10") or "1")
    if quantity <= 0:
        raise V2Error("FT1-10 (quantity) must be more than 0", where=f"FT1[{n}]-10", code="102")
    item: dict[str, Any] = {
        "identifier": [{"system": system, "value": value}], "status": "billable",
        "code": code, "subject": {"reference": patient}, "context": {"reference": visit},
        "quantity": {"value": quantity}}
    occurred = dtm(ft1.at(4), f"FT1[{n}]-4")
    if occurred:
        item["occurrenceDateTime"] = occurred
    posted = dtm(ft1.at(5), f"FT1[{n}]-5")
    if posted:
        item["enteredDate"] = posted
    price = _unit_price(ft1, n, quantity, settings)
    if price is not None:
        item["priceOverride"] = {"value": price, "currency": settings.fhir_billing_currency}
    performer = segments.practitioner(msg, ft1, 20, 1, mapped, key=f"ft1-{n}-performer")
    if performer:
        item["performer"] = [{"actor": {"reference": performer}}]
    mapped.add(Wanted(key=f"charge-{n}", type_="ChargeItem", match=[(system, value)],
                      content=item, source=f"FT1[{n}]"))
    return item, price is None


def _unit_price(ft1: Segment, n: int, quantity: Decimal, settings: Settings) -> Decimal | None:
    for field_, per_unit in ((12, True), (11, False)):
        text = decimal_text(ft1.at(field_, 1, 1, 1), f"FT1[{n}]-{field_}")
        if text is None:
            continue
        currency = ft1.at(field_, 1, 1, 2)
        if currency and currency != settings.fhir_billing_currency:
            raise V2Error(f"FT1-{field_}: amounts must be in {settings.fhir_billing_currency}",
                          where=f"FT1[{n}]-{field_}", code="103")
        amount = Decimal(text)
        if amount < 0:
            raise V2Error(f"FT1-{field_} must not be negative", where=f"FT1[{n}]-{field_}",
                          code="102")
        if per_unit:
            return amount
        return unit_price(amount, quantity)  # 50.0000 -> 50, 33.3333 stays
    return None
