"""``$lookup``, ``$subsumes`` and ``CodeSystem/$validate-code``: one code system's concepts.

Each is one or two indexed reads in the concept store: a concept by its code,
its children by the parent index, subsumption by the ancestor index.
"""

from __future__ import annotations

from typing import Any

from fhir_server.core.errors import Invalid, NotFound
from fhir_server.storage.concepts import ConceptRow, SystemVersion
from fhir_server.terminology.catalog import Catalog

OUTCOMES = ("equivalent", "subsumes", "subsumed-by", "not-subsumed")


def coding_of(params: dict[str, list[Any]], *, code: str = "code", system: str = "system",
              coding: str = "coding", version: str = "version") -> dict[str, Any] | None:
    """The coding a request names, as ``code``+``system`` or as a Coding (not both)."""
    given = params.get(coding)
    if given and params.get(code):
        raise Invalid(f"Give either {code} or {coding}, not both", expression=[code, coding])
    if given:
        value = dict(given[0])
        if params.get(version) and "version" not in value:
            value["version"] = params[version][0]
        return value
    if params.get(code):
        out: dict[str, Any] = {"code": params[code][0]}
        if params.get(system):
            out["system"] = params[system][0]
        if params.get(version):
            out["version"] = params[version][0]
        return out
    return None


def check_code(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid("A code is required", expression=[where])
    return value


async def concept(catalog: Catalog, system: SystemVersion, code: str) -> ConceptRow | None:
    return (await catalog.repo.concepts.get(system=system, codes=[code])).get(code)


def display_matches(row: ConceptRow, display: str) -> bool:
    names = {row.display or ""} | {str(d.get("value")) for d in row.designations}
    return display in names


async def lookup(catalog: Catalog, coding: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    system_url = coding.get("system")
    if not isinstance(system_url, str) or not system_url:
        raise Invalid("$lookup needs the code's system", expression=["system"])
    code = check_code(coding.get("code"), "code")
    system = await catalog.must_have_system(system_url, coding.get("version"), "system")
    row = await concept(catalog, system, code)
    if row is None:
        raise NotFound(f"The code '{code[:64]}' is not in {system.label[:200]}",
                       expression=["code"], code="not-found")
    source_id = system.source.split("/")[1] if system.source.startswith("CodeSystem/") else ""
    resource = await catalog.read("CodeSystem", source_id) if source_id else {}
    params: list[dict[str, Any]] = [
        {"name": "name", "valueString": str(resource.get("name") or system.url)}]
    if system.version:
        params.append({"name": "version", "valueString": system.version})
    params.append({"name": "display", "valueString": row.display or row.code})
    if row.definition:
        params.append({"name": "definition", "valueString": row.definition})
    for d in row.designations:
        parts = [{"name": k, k_value: d[k]} for k, k_value in
                 (("language", "valueCode"), ("use", "valueCoding"), ("value", "valueString"))
                 if k in d]
        params.append({"name": "designation", "part": parts})
    properties: list[tuple[str, dict[str, Any]]] = [("parent", {"valueCode": p})
                                                    for p in row.parents]
    properties += [("child", {"valueCode": c})
                   for c in await catalog.repo.concepts.children(system=system, code=code)]
    properties += [(str(p.get("code")), {k: v for k, v in p.items() if k.startswith("value")})
                   for p in row.properties]
    properties.append(("inactive", {"valueBoolean": not row.active}))
    for name, value in properties:
        if wanted and name not in wanted:
            continue
        params.append({"name": "property", "part": [
            {"name": "code", "valueCode": name}, {"name": "value", **value}]})
    return {"resourceType": "Parameters", "parameter": params}


async def subsumes(catalog: Catalog, a: dict[str, Any], b: dict[str, Any],
                   version: str | None) -> dict[str, Any]:
    systems = {s for s in (a.get("system"), b.get("system")) if s}
    if len(systems) != 1:
        raise Invalid("$subsumes needs both codes in one system (system, or codingA and "
                      "codingB with the same system)", expression=["system"])
    system = await catalog.must_have_system(systems.pop(), version or a.get("version"), "system")
    code_a, code_b = check_code(a.get("code"), "codeA"), check_code(b.get("code"), "codeB")
    found = await catalog.repo.concepts.get(system=system, codes=[code_a, code_b])
    for code, name in ((code_a, "codeA"), (code_b, "codeB")):
        if code not in found:
            raise NotFound(f"The code '{code[:64]}' is not in {system.label[:200]}",
                           expression=[name], code="not-found")
    if code_a == code_b:
        outcome = "equivalent"
    elif await catalog.repo.concepts.is_below(system=system, code=code_b, ancestor=code_a):
        outcome = "subsumes"
    elif await catalog.repo.concepts.is_below(system=system, code=code_a, ancestor=code_b):
        outcome = "subsumed-by"
    else:
        outcome = "not-subsumed"
    return {"resourceType": "Parameters",
            "parameter": [{"name": "outcome", "valueCode": outcome}]}


def result(ok: bool, message: str | None, display: str | None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": ok}]
    if message:
        params.append({"name": "message", "valueString": message})
    if display:
        params.append({"name": "display", "valueString": display})
    return {"resourceType": "Parameters", "parameter": params}


async def validate_in_system(catalog: Catalog, system: SystemVersion,
                             coding: dict[str, Any]) -> tuple[bool, str | None, str | None]:
    """(valid, message, display) of a coding against one stored code system version."""
    code = check_code(coding.get("code"), "code")
    row = await concept(catalog, system, code)
    if row is None:
        return False, f"The code '{code}' is not in {system.label}", None
    display = coding.get("display")
    if isinstance(display, str) and display and not display_matches(row, display):
        return False, (f"The display '{display}' is not a display of '{code}' in "
                       f"{system.label}; it is '{row.display}'"), row.display
    note = f"The code '{code}' is inactive in {system.label}" if not row.active else None
    return True, note, row.display
