"""``CodeSystem/$lookup``, ``CodeSystem/$validate-code`` and ``CodeSystem/$subsumes`` (R4).

Thin declarations over ``fhir_server/terminology/concepts.py``: each reads the code system's
concepts from the concept store (kept current with the CodeSystem resources).
"""

from __future__ import annotations

from typing import Any

from fhir_server.core.errors import Invalid
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.storage.concepts import SystemVersion
from fhir_server.terminology.catalog import Catalog, one_of
from fhir_server.terminology.codesystem import concept_rows, indexable
from fhir_server.terminology.concepts import (
    coding_of,
    display_matches,
    lookup,
    result,
    subsumes,
    validate_in_system,
)

R4 = "http://hl7.org/fhir/OperationDefinition"
READ = (("CodeSystem", "r"),)


def catalog(call: Call) -> Catalog:
    return Catalog(repo=call.repo, settings=call.settings)


async def run_lookup(call: Call) -> dict[str, Any]:
    cat = catalog(call)
    coding = coding_of(call.params)
    if coding is None:
        raise Invalid("$lookup needs a code and system, or a coding", expression=["code"])
    if call.id_ is not None:
        resource = await cat.read("CodeSystem", call.id_)
        coding.setdefault("system", resource.get("url"))
        coding.setdefault("version", resource.get("version"))
    return await lookup(cat, coding, [str(p) for p in call.params.get("property", [])])


def _codings(call: Call) -> list[dict[str, Any]]:
    given = one_of(call.params, "code", "coding", "codeableConcept")
    if given is None:
        raise Invalid("Give a code, a coding or a codeableConcept", expression=["code"])
    if given == "codeableConcept":
        codings = [c for c in call.one("codeableConcept").get("coding") or [] if isinstance(c, dict)]
        if not codings:
            raise Invalid("The codeableConcept has no coding", expression=["codeableConcept"])
        return codings
    coding = coding_of(call.params)
    assert coding is not None
    if call.params.get("display") and "display" not in coding:
        coding["display"] = call.one("display")
    return [coding]


async def _posted_system(resource: dict[str, Any], coding: dict[str, Any]
                         ) -> tuple[bool, str | None, str | None]:
    """Validate against a CodeSystem given in the request (not stored): its concepts in memory."""
    if not indexable(resource):
        raise Invalid("The codeSystem parameter has no concepts", expression=["codeSystem"])
    rows = {r.code: r for r in concept_rows(resource)}
    code = str(coding.get("code") or "")
    row = rows.get(code)
    label = str(resource.get("url") or "the given code system")
    if row is None:
        return False, f"The code '{code}' is not in {label}", None
    display = coding.get("display")
    if isinstance(display, str) and display and not display_matches(row, display):
        return False, f"The display '{display}' is not a display of '{code}'; it is " \
                      f"'{row.display}'", row.display
    return True, None, row.display


async def run_validate_code(call: Call) -> dict[str, Any]:
    cat = catalog(call)
    codings = _codings(call)
    posted = call.one("codeSystem")
    if call.id_ is not None:
        resource = await cat.read("CodeSystem", call.id_)
        url, version = resource.get("url"), resource.get("version")
    else:
        url, version = call.one("url"), call.one("version")
    if posted is None and not url:
        url = codings[0].get("system")
    if posted is None and not isinstance(url, str):
        raise Invalid("Give the code system: url, system or codeSystem", expression=["url"])
    system: SystemVersion | None = None
    if posted is None:
        system = await cat.must_have_system(str(url), version, "url")
    messages: list[str] = []
    for coding in codings:
        if posted is None and coding.get("system") not in (None, url):
            messages.append(f"The code's system {coding.get('system')} is not {url}")
            continue
        assert posted is not None or system is not None
        ok, message, display = (await _posted_system(posted, coding) if posted is not None
                                else await validate_in_system(cat, system, coding))  # type: ignore[arg-type]
        if ok:
            return result(True, message, display)
        messages.append(message or "invalid")
    return result(False, "; ".join(messages), None)


async def run_subsumes(call: Call) -> dict[str, Any]:
    cat = catalog(call)
    system = call.one("system")
    if call.id_ is not None:
        system = (await cat.read("CodeSystem", call.id_)).get("url")
    a = coding_of(call.params, code="codeA", coding="codingA")
    b = coding_of(call.params, code="codeB", coding="codingB")
    if a is None or b is None:
        raise Invalid("$subsumes needs codeA and codeB (with system), or codingA and codingB",
                      expression=["codeA", "codeB"])
    for coding in (a, b):
        if system and not coding.get("system"):
            coding["system"] = system
    return await subsumes(cat, a, b, call.one("version"))


def _coding_params(prefix: str = "") -> tuple[Param, ...]:
    return (Param(f"code{prefix}", "in", 0, "1", "code", "The code"),
            Param(f"coding{prefix}", "in", 0, "1", "Coding", "The code as a Coding"))


LOOKUP = Operation(
    id="CodeSystem-lookup", code="lookup", title="Concept look-up",
    description="Details of a code of a code system: display, definition, designations and "
    "properties, with parent and child.",
    resource=("CodeSystem",), type_level=True, instance=True, affects_state=False,
    base=f"{R4}/CodeSystem-lookup", requires=READ,
    parameters=(
        Param("code", "in", 0, "1", "code", "The code to look up"),
        Param("system", "in", 0, "1", "uri", "The code system's url"),
        Param("version", "in", 0, "1", "string", "The code system's version"),
        Param("coding", "in", 0, "1", "Coding", "The code as a Coding"),
        Param("property", "in", 0, "*", "code", "Properties to return (default: all)"),
        Param("name", "out", 1, "1", "string", "The code system's name"),
        Param("version", "out", 0, "1", "string", "The code system's version"),
        Param("display", "out", 1, "1", "string", "The code's display"),
        Param("designation", "out", 0, "*", None, "Other names", parts=(
            Param("language", "out", 0, "1", "code"), Param("use", "out", 0, "1", "Coding"),
            Param("value", "out", 1, "1", "string"))),
        Param("property", "out", 0, "*", None, "Properties, parent and child included", parts=(
            Param("code", "out", 1, "1", "code"), Param("value", "out", 0, "1", "code"))),
    ),
    run=run_lookup)

CODE_SYSTEM_VALIDATE = Operation(
    id="CodeSystem-validate-code", code="validate-code", title="Code system validation",
    description="Whether a code (or a coding, or any coding of a CodeableConcept) is in a code "
    "system, and whether its display is right.",
    resource=("CodeSystem",), type_level=True, instance=True, affects_state=False,
    base=f"{R4}/CodeSystem-validate-code", requires=READ, resource_body="codeSystem",
    parameters=(
        Param("url", "in", 0, "1", "uri", "The code system's url"),
        Param("codeSystem", "in", 0, "1", "CodeSystem", "A code system given in the request"),
        Param("code", "in", 0, "1", "code", "The code"),
        Param("version", "in", 0, "1", "string", "The code system's version"),
        Param("display", "in", 0, "1", "string", "The display to check"),
        Param("coding", "in", 0, "1", "Coding", "The code as a Coding"),
        Param("codeableConcept", "in", 0, "1", "CodeableConcept", "Codes, any one valid"),
        Param("result", "out", 1, "1", "boolean", "Whether the code is valid"),
        Param("message", "out", 0, "1", "string", "Why not, or a note"),
        Param("display", "out", 0, "1", "string", "The code's display"),
    ),
    run=run_validate_code)

SUBSUMES = Operation(
    id="CodeSystem-subsumes", code="subsumes", title="Subsumption testing",
    description="How two codes of a code system relate: equivalent, subsumes, subsumed-by or "
    "not-subsumed.",
    resource=("CodeSystem",), type_level=True, instance=True, affects_state=False,
    base=f"{R4}/CodeSystem-subsumes", requires=READ,
    parameters=(
        *_coding_params("A"), *_coding_params("B"),
        Param("system", "in", 0, "1", "uri", "The code system's url"),
        Param("version", "in", 0, "1", "string", "The code system's version"),
        Param("outcome", "out", 1, "1", "code",
              "equivalent | subsumes | subsumed-by | not-subsumed"),
    ),
    run=run_subsumes)
