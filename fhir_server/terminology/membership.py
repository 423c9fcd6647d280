"""``ValueSet/$validate-code``: whether a code (a Coding, a CodeableConcept) is in a value set.

The value set's plan (``compose.py``) decides, the same rule ``$expand`` and
``:in`` use: the code's system must be one of the plan's parts and the concept
must satisfy that part's condition (one indexed count), or be listed.
"""

from __future__ import annotations

from typing import Any

from fhir_server.core.errors import Invalid
from fhir_server.storage.concepts import Codes, Part, all_of
from fhir_server.terminology.catalog import Catalog
from fhir_server.terminology.compose import Plan
from fhir_server.terminology.concepts import display_matches, result
from fhir_server.terminology.time_bound import expansion_time


async def coding_in(catalog: Catalog, plan: Plan, coding: dict[str, Any], vs_label: str
                    ) -> tuple[bool, str | None, str | None]:
    code, system_url = coding.get("code"), coding.get("system")
    if not isinstance(code, str) or not code:
        raise Invalid("A code is required", expression=["code"])
    if not isinstance(system_url, str) or not system_url:
        raise Invalid("A code needs its system to be validated against a value set",
                      expression=["system"])
    version = coding.get("version")
    display = coding.get("display") if isinstance(coding.get("display"), str) else None
    for part in plan.parts:
        if part.system.url != system_url or (version and part.system.version != version):
            continue
        rows = await catalog.repo.concepts.get(system=part.system, codes=[code])
        row = rows.get(code)
        if row is None:
            return False, f"The code '{code}' is not in {part.system.label}", None
        if not await catalog.repo.concepts.count(part=Part(part.system,
                                                            all_of(part.where, Codes((code,))))):
            return False, f"The code '{system_url}|{code}' is not in the value set {vs_label}", \
                row.display
        if display and not display_matches(row, display):
            return False, (f"The display '{display}' is not a display of '{code}'; it is "
                           f"'{row.display}'"), row.display
        note = f"The code '{code}' is inactive" if not row.active else None
        return True, note, row.display
    for item in plan.listed:
        if item.system == system_url and item.code == code:
            if display and item.display and display != item.display:
                return False, (f"The display '{display}' is not a display of '{code}'; it is "
                               f"'{item.display}'"), item.display
            return True, None, item.display
    known = await catalog.system(system_url, version)
    if known is not None:
        exists = await catalog.repo.concepts.get(system=known, codes=[code])
        if code not in exists:
            return False, f"The code '{code}' is not in {known.label}", None
    return False, f"The code '{system_url}|{code}' is not in the value set {vs_label}", None


async def validate(catalog: Catalog, plan: Plan, codings: list[dict[str, Any]],
                   vs_label: str) -> dict[str, Any]:
    """``result`` true when any of the codings is in the value set."""
    messages: list[str] = []
    first_display: str | None = None
    for coding in codings:
        with expansion_time(catalog.settings):
            ok, message, display = await coding_in(catalog, plan, coding, vs_label)
        if ok:
            return result(True, message, display)
        if message:
            messages.append(message)
        first_display = first_display or display
    return result(False, "; ".join(messages) or "No code was given", first_display)
