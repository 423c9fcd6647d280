"""Reading the FHIR resources a claim or an eligibility request travels with, for X12.

A request reaches the X12 adapter packed (``fhir_server/operations/common.py`` ``pack``): the
resources it references are contained, and referenced as ``#id``. What X12 needs of
them (names, NPI, tax id, addresses, member id, payer id) is read here; a value that
X12 requires and the resources lack is a ``Missing`` error naming the FHIR element.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from fhir_server.core.errors import Unprocessable

Resource = dict[str, Any]

NPI = "http://hl7.org/fhir/sid/us-npi"
TAX_ID = "urn:oid:2.16.840.1.113883.4.4"  # US Employer Identification Number
PAYER_ID_TYPE = ("http://terminology.hl7.org/CodeSystem/v2-0203", "NIIP")
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = ("urn:oid:2.16.840.1.113883.6.285", "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
         "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets")
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
GENDER = {"male": "M", "female": "F"}


class Missing(Unprocessable):
    """X12 requires something the resources do not say (422, naming the element)."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"Cannot write the X12 transaction: {what}", expression=[where],
                         code="required")


class Packed:
    """A packed resource and its contained resources, by ``#id``."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.contained = {f"#{c.get('id')}": c for c in resource.get("contained") or []
                          if isinstance(c, dict)}

    def get(self, reference: Any, type_: str | tuple[str, ...]) -> Resource | None:
        target = reference.get("reference") if isinstance(reference, dict) else None
        found = self.contained.get(target) if isinstance(target, str) else None
        types = (type_,) if isinstance(type_, str) else type_
        return found if found is not None and found.get("resourceType") in types else None

    def need(self, reference: Any, type_: str | tuple[str, ...], where: str) -> Resource:
        found = self.get(reference, type_)
        if found is None:
            names = type_ if isinstance(type_, str) else " or ".join(type_)
            raise Missing(f"{where} must be a {names} stored on this server", where)
        return found


def identifier(resource: Resource, system: str) -> str | None:
    for item in resource.get("identifier") or []:
        if isinstance(item, dict) and item.get("system") == system and item.get("value"):
            return str(item["value"])
    return None


def typed_identifier(resource: Resource, type_: tuple[str, str]) -> str | None:
    for item in resource.get("identifier") or []:
        codings = ((item or {}).get("type") or {}).get("coding") or []
        if any((c.get("system"), c.get("code")) == type_ for c in codings) and item.get("value"):
            return str(item["value"])
    return None


def npi(resource: Resource, where: str) -> str:
    value = identifier(resource, NPI)
    if not value:
        raise Missing(f"{where} needs an NPI (identifier system {NPI})", f"{where}.identifier")
    return value


def payer_id(organization: Resource, where: str) -> str:
    value = typed_identifier(organization, PAYER_ID_TYPE)
    if not value:
        raise Missing(f"{where} needs its X12 payer id (an identifier of type v2-0203 NIIP)",
                      f"{where}.identifier")
    return value


def person_name(resource: Resource, where: str) -> tuple[str, str]:
    """(family, given) of a Patient, Practitioner or RelatedPerson (official name first)."""
    names = [n for n in resource.get("name") or [] if isinstance(n, dict)]
    names.sort(key=lambda n: n.get("use") != "official")
    for name in names:
        family = name.get("family")
        if family:
            return str(family), " ".join(str(g) for g in name.get("given") or [])[:35]
    raise Missing(f"{where} needs a name with a family name", f"{where}.name")


def organization_name(resource: Resource, where: str) -> str:
    if not resource.get("name"):
        raise Missing(f"{where} needs a name", f"{where}.name")
    return str(resource["name"])


def address(resource: Resource, where: str, *, required: bool) -> tuple[list[str], tuple[str, ...]] | None:
    """(N3 lines, N4 city/state/zip) of the first address with a line, city and postal code."""
    for item in resource.get("address") or []:
        if not isinstance(item, dict):
            continue
        lines = [str(line) for line in item.get("line") or []][:2]
        if lines and item.get("city") and item.get("postalCode"):
            zip_ = "".join(ch for ch in str(item["postalCode"]) if ch.isalnum())
            return lines, (str(item["city"]), str(item.get("state") or ""), zip_)
    if required:
        raise Missing(f"{where} needs an address with a line, city and postal code",
                      f"{where}.address")
    return None


def x12_date(value: Any) -> str | None:
    """CCYYMMDD of a FHIR date or dateTime (None when it is not a full date)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10]).strftime("%Y%m%d")
    except ValueError:
        return None


def amount(value: Any) -> str:
    """An X12 monetary amount (R): exact, no exponent, no trailing zeros after the point."""
    number = Decimal(str(value))
    text = f"{number:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def coding(concept: Any, systems: tuple[str, ...]) -> dict[str, Any] | None:
    for item in (concept or {}).get("coding") or []:
        if isinstance(item, dict) and item.get("system") in systems and item.get("code"):
            return item
    return None


def phone_or_email(resource: Resource) -> tuple[str, str] | None:
    """(X12 communication qualifier, number) of a resource's (or its contact's) telecom."""
    telecoms = list(resource.get("telecom") or [])
    for contact in resource.get("contact") or []:
        telecoms += (contact or {}).get("telecom") or []
    for system, qualifier in (("phone", "TE"), ("email", "EM"), ("fax", "FX")):
        for telecom in telecoms:
            if isinstance(telecom, dict) and telecom.get("system") == system \
                    and telecom.get("value"):
                value = str(telecom["value"])
                if qualifier == "TE":
                    value = "".join(ch for ch in value if ch.isdigit())
                return qualifier, value
    return None
