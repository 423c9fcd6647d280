"""Composing a visit's bill: one code for ``Invoice/$generate-bill`` and for the billing
worker that bills a finished visit (``revenue/visit_bill.py``, ``operations/bill_visit.py``).

Given the patient, the encounter or appointment billed and the charges (ChargeItems,
new or stored), it prices every charge (its ``priceOverride``, or else the price list),
and composes the issued Invoice (a line per ChargeItem with its price components,
``totalNet``, ``totalGross``) and, when the patient has Coverage in force on the service
date, the Claim (``coverage.billed_coverage``: a patient with active Coverage none of
which, or more than one of which, can be billed without a guess is refused with
``CoverageUndecided``). A bill is keyed by its appointment and encounter references
(``urn:fhir-rcm-server:bill|Appointment/[id]``); the draft Invoice a booking created
becomes the bill's Invoice. Nothing is written here: callers commit the resources
returned, all or nothing (an operation's commit, the billing worker's). ``bill_of``
finds the open bill a Claim settles, for the balance postings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.errors import Unprocessable
from fhir_server.core.money import cents, decimal_of, money
from fhir_server.revenue.amounts import items_total
from fhir_server.revenue.coverage import (
    billed_coverage,
    claim_insurance,
    lapsed_coverages,
    with_authorizations,
)
from fhir_server.revenue.records import LOCAL_REF
from fhir_server.revenue.states import (
    OPEN_INVOICES,
    ClaimStatus,
    InvoiceStatus,
    invoice_status,
    transition,
)
from fhir_server.service import interactions as svc
from fhir_server.service.criteria import search_token
from fhir_server.storage.model import instant, now_ms
from fhir_server.storage.repository import Repository
from fhir_server.terminology.pricelist import Priced, line_item, matches_code, price_line
from fhir_server.terminology.systems import (
    BILL_INVOICE,
    BILL_KEY,
    CLAIM_COVERAGE_CHOICE,
    CLAIM_TYPE,
    PROCESS_PRIORITY,
)

Resource = dict[str, Any]


@dataclass
class Charge:
    """A ChargeItem to bill: its content (priced in place), its stored version (None: new),
    and where its code came from, for error messages."""

    item: Resource
    previous: int | None
    where: str


@dataclass
class Bill:
    """What a bill writes: (resource, previous version or None), ChargeItems first."""

    writes: list[tuple[Resource, int | None]]
    invoice: Resource


def lease_names(keys: list[str]) -> list[str]:
    """The leases a bill is composed under: one per key, shared by every way of billing."""
    return [f"bill:{k}" for k in keys]


async def bills_of(*, repo: Repository, settings: Settings, keys: list[str],
                   patient_ref: str) -> tuple[Resource | None, Resource | None]:
    """(the issued Invoice of these keys, else a draft one) for the patient."""
    if not keys:
        return None, None
    invoices = await svc.find_resources(
        repo=repo, settings=settings, type_="Invoice",
        criteria=[("identifier", ",".join(search_token(BILL_KEY, k) for k in keys))])
    # An appointment can have several patients: each has a bill of their own.
    invoices = [i for i in invoices if (i.get("subject") or {}).get("reference") == patient_ref]
    issued = [i for i in invoices if invoice_status(i) in OPEN_INVOICES]
    drafts = [i for i in invoices if invoice_status(i) is InvoiceStatus.DRAFT]
    return (issued[0] if issued else None), (drafts[0] if drafts else None)


async def compose(*, repo: Repository, settings: Settings, patient_ref: str,
                  encounter: Resource | None, appointment: Resource | None, keys: list[str],
                  draft: Resource | None, charges: list[Charge]) -> Bill:
    """Price the charges and compose the ChargeItems, the Invoice and the Claim (if any)."""
    day = service_day(encounter, appointment)
    currency = settings.fhir_billing_currency
    invoice_id = str(draft["id"]) if draft else str(uuid.uuid4())
    key_ids = [{"system": BILL_KEY, "value": k} for k in keys]  # the Invoice's identifiers
    # ChargeItems and the Claim also name their Invoice.
    bill_ids = [*key_ids, {"system": BILL_INVOICE, "value": f"Invoice/{invoice_id}"}]
    lines = [await _price(repo, settings, charge, bill_ids, currency) for charge in charges]
    total_net = sum((p.net for _, _, p in lines), Decimal(0))
    total_gross = sum((p.gross for _, _, p in lines), Decimal(0))
    now = instant(now_ms())
    invoice: Resource = {
        "resourceType": "Invoice", "id": invoice_id,
        **({"extension": draft["extension"]} if draft and draft.get("extension") else {}),
        **({"identifier": key_ids} if key_ids else {}),
        "status": transition("Invoice", draft and draft.get("status"), InvoiceStatus.ISSUED),
        "subject": {"reference": patient_ref},
        "recipient": {"reference": patient_ref}, "date": now,
        "lineItem": [line_item(n, f"ChargeItem/{c.item['id']}", p, currency)
                     for n, (c, (_, _, p)) in enumerate(zip(charges, lines, strict=True), 1)],
        "totalNet": money(total_net, currency), "totalGross": money(total_gross, currency),
    }
    claim = await _claim(repo, settings, patient_ref=patient_ref, encounter=encounter,
                         bill_ids=bill_ids, day=day, lines=lines)
    writes: list[tuple[Resource, int | None]] = [(c.item, c.previous) for c in charges]
    writes.append((invoice, int(draft["meta"]["versionId"]) if draft else None))
    if claim is not None:
        writes.append((claim, None))
    return Bill(writes=writes, invoice=invoice)


async def _price(repo: Repository, settings: Settings, charge: Charge,
                 bill_ids: list[dict[str, str]], currency: str
                 ) -> tuple[Resource, Decimal, Priced]:
    """(the charge's coding, its quantity, its priced line); the ChargeItem (in place) gets
    the bill's identifiers and the price-list entry that priced it."""
    item = charge.item
    kept = [i for i in item.get("identifier") or [] if i not in bill_ids]
    item["identifier"] = [*kept, *bill_ids]
    coding = ((item.get("code") or {}).get("coding") or [{}])[0]
    quantity = decimal_of((item.get("quantity") or {}).get("value", 1), f"{charge.where}")
    override = (item.get("priceOverride") or {}).get("value")
    definition = None
    if override is None:
        definition = await price_definition(repo, settings, coding, charge.where)
        if definition.get("url"):
            item["definitionCanonical"] = [definition["url"]]
    line = price_line(definition, quantity=quantity, charge_item=item, currency=currency,
                      where=charge.where,
                      unit_price=None if override is None else decimal_of(override, charge.where))
    return ({k: coding[k] for k in ("system", "code", "display") if k in coding}, quantity, line)


def bill_invoice_id(claim: Resource) -> str | None:
    """The id of the Invoice a Claim names with ``urn:fhir-rcm-server:invoice``."""
    value = next((i.get("value") for i in claim.get("identifier") or []
                  if i.get("system") == BILL_INVOICE), None)
    match = LOCAL_REF.match(value) if isinstance(value, str) else None
    return match.group(2) if match is not None and match.group(1) == "Invoice" else None


async def bill_of(repo: Repository, claim: Resource) -> tuple[Resource, int] | None:
    """The open Invoice a Claim bills (None: no bill to settle).

    It is the one the Claim names with ``urn:fhir-rcm-server:invoice``, and only when it is
    that patient's, issued (or balanced), and billed the Claim's total.
    """
    invoice_id = bill_invoice_id(claim)
    if invoice_id is None:
        return None
    version, invoice = await svc.current_resource(repo, "Invoice", invoice_id)
    if invoice is None or version is None or invoice_status(invoice) not in OPEN_INVOICES:
        return None
    if (invoice.get("subject") or {}).get("reference") != (claim.get("patient") or {}).get(
            "reference"):
        return None
    gross = decimal_of((invoice.get("totalGross") or {}).get("value", 0))
    if decimal_of((claim.get("total") or {}).get("value", gross)) != gross:
        return None
    try:
        claimed = items_total(claim.get("item") or [])
    except Unprocessable:
        return None
    if claimed != gross:
        return None  # a claim for more (or less) than was billed settles nothing
    return invoice, version


async def price_definition(repo: Repository, settings: Settings, coding: Resource,
                           where: str) -> Resource:
    """The price list's entry for a code: the active ChargeItemDefinition with it."""
    system, code = coding.get("system"), coding.get("code")
    if not isinstance(code, str) or not code:
        raise Unprocessable("A service code needs a code", expression=[where])
    criteria = [("code", search_token(system, code)), ("status", "active")]
    found = [d for d in await svc.find_resources(repo=repo, settings=settings,
                                                 type_="ChargeItemDefinition", criteria=criteria)
             if matches_code(d, system, code)]
    if not found:
        raise Unprocessable(f"Service code '{code[:64]}' has no price: give one, or add an active "
                            "ChargeItemDefinition for it to the price list",
                            expression=[where], code="not-found")
    # Several active definitions: the most recently dated one wins (then the id, to be stable).
    found.sort(key=lambda d: (str(d.get("date", "")), str(d.get("id"))), reverse=True)
    return found[0]


def service_day(encounter: Resource | None, appointment: Resource | None) -> date:
    for value in ((encounter or {}).get("period", {}).get("start"),
                  (appointment or {}).get("start")):
        if isinstance(value, str) and len(value) >= 10:
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                continue
    return datetime.now(UTC).date()


async def _claim(repo: Repository, settings: Settings, *, patient_ref: str,
                 encounter: Resource | None, bill_ids: list[dict[str, str]], day: date,
                 lines: list[tuple[Resource, Decimal, Priced]]
                 ) -> Resource | None:
    coverages = await svc.find_resources(repo=repo, settings=settings, type_="Coverage",
                                         criteria=[("beneficiary", patient_ref),
                                                   ("status", "active")])
    lapsed = await _lapsed(repo, settings, patient_ref) if coverages else {}
    # CoverageUndecided: someone checks the patient's eligibility.
    coverage = billed_coverage(coverages, day, lapsed)
    if coverage is None:
        return None
    insurance, why = claim_insurance(coverage, coverages, day, lapsed)
    authorizations = await svc.find_resources(
        repo=repo, settings=settings, type_="ClaimResponse",
        criteria=[("patient", patient_ref), ("use", "preauthorization"),
                  ("outcome", "complete")])
    insurance = with_authorizations(insurance, authorizations, day)
    provider = _provider(settings, encounter)
    currency = settings.fhir_billing_currency
    claim: Resource = {
        "resourceType": "Claim", "id": str(uuid.uuid4()),
        "identifier": bill_ids,
        "status": transition("Claim", None, ClaimStatus.ACTIVE),
        "type": {"coding": [{"system": CLAIM_TYPE, "code": "professional"}]},
        "use": "claim", "patient": {"reference": patient_ref},
        "billablePeriod": {"start": day.isoformat(), "end": day.isoformat()},
        "created": instant(now_ms()), "provider": {"reference": provider},
        "priority": {"coding": [{"system": PROCESS_PRIORITY, "code": "normal"}]},
        "extension": [{"url": CLAIM_COVERAGE_CHOICE, "valueString": why}],
        "insurance": insurance,
        "item": [_claim_item(n, coding, quantity, p, day, encounter, currency)
                 for n, (coding, quantity, p) in enumerate(lines, 1)],
    }
    # The Claim's total is what its items bill (revenue/amounts.py), as a payer counts it.
    claim["total"] = money(items_total(claim["item"]), currency)
    payors = [p for p in coverage.get("payor") or []
              if str((p or {}).get("reference", "")).startswith("Organization/")]
    if payors:
        claim["insurer"] = {"reference": payors[0]["reference"]}
    diagnoses = [d for d in (encounter or {}).get("diagnosis") or [] if d.get("condition")]
    if diagnoses:
        claim["diagnosis"] = [{"sequence": n, "diagnosisReference": d["condition"]}
                              for n, d in enumerate(diagnoses, 1)]
    return claim


async def _lapsed(repo: Repository, settings: Settings, patient_ref: str) -> dict[str, str]:
    """The patient's Coverages whose latest eligibility answer says not in force."""
    answers = await svc.find_resources(repo=repo, settings=settings,
                                       type_="CoverageEligibilityResponse",
                                       criteria=[("patient", patient_ref)])
    if not answers:
        return {}
    requests = await svc.find_resources(repo=repo, settings=settings,
                                        type_="CoverageEligibilityRequest",
                                        criteria=[("patient", patient_ref)])
    return lapsed_coverages(answers, {f"CoverageEligibilityRequest/{r['id']}": r
                                      for r in requests})


def _provider(settings: Settings, encounter: Resource | None) -> str:
    provider = ((encounter or {}).get("serviceProvider") or {}).get("reference") \
        or settings.fhir_billing_provider
    if not provider:
        raise Unprocessable("The patient has active Coverage, but the Claim has no provider: set "
                            "FHIR_BILLING_PROVIDER or the Encounter's serviceProvider",
                            expression=["Encounter.serviceProvider"])
    return str(provider)


def _claim_item(n: int, coding: Resource, quantity: Decimal, line: Priced, day: date,
                encounter: Resource | None, currency: str) -> Resource:
    """A Claim item billing a line's gross; ``unitPrice`` only when it divides exactly, so
    that unitPrice x quantity is the net, as R4 defines it."""
    item: Resource = {"sequence": n, "productOrService": {"coding": [coding]},
                      "servicedDate": day.isoformat(), "quantity": {"value": quantity}}
    unit = line.gross / quantity
    if cents(unit) * quantity == line.gross:
        item["unitPrice"] = money(unit, currency)
    item["net"] = money(line.gross, currency)
    if encounter:
        item["encounter"] = [{"reference": f"Encounter/{encounter['id']}"}]
    return item
