"""``ValueSet/$expand``, ``ValueSet/$validate-code`` and ``ConceptMap/$translate`` (R4).

Thin declarations over ``fhir_server/terminology/expand.py``, ``membership.py`` and
``translate.py``. The value set is the instance, the one with ``url`` (and
``valueSetVersion``), or one given in the request (``valueSet``, or a ValueSet
POSTed as the body).
"""

from __future__ import annotations

from typing import Any

from fhir_server.core.errors import Invalid
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.operations.code_systems import R4, _codings, catalog
from fhir_server.terminology.catalog import Catalog, one_of
from fhir_server.terminology.compose import plan_of
from fhir_server.terminology.concepts import coding_of
from fhir_server.terminology.expand import ExpandRequest, expand
from fhir_server.terminology.membership import validate
from fhir_server.terminology.translate import translate


async def _value_set(call: Call, cat: Catalog) -> dict[str, Any]:
    if call.id_ is not None:
        return await cat.read("ValueSet", call.id_)
    given = one_of(call.params, "url", "valueSet")
    if given is None:
        raise Invalid("Give the value set: url or valueSet (or call the operation on a "
                      "ValueSet instance)", expression=["url"])
    if given == "valueSet":
        value_set: dict[str, Any] = call.one("valueSet")
        if value_set.get("resourceType") != "ValueSet":
            raise Invalid("valueSet must be a ValueSet", expression=["valueSet"])
        return value_set
    url = str(call.one("url"))
    version = call.one("valueSetVersion")
    return await cat.must_find("ValueSet", f"{url}|{version}" if version else url, "url")


def _label(value_set: dict[str, Any]) -> str:
    return str(value_set.get("url") or f"ValueSet/{value_set.get('id', '(given)')}")


async def run_expand(call: Call) -> dict[str, Any]:
    cat = catalog(call)
    value_set = await _value_set(call, cat)
    req = ExpandRequest(filter=call.one("filter"), offset=call.one("offset") or 0,
                        count=call.one("count"),
                        active_only=bool(call.one("activeOnly")),
                        include_designations=bool(call.one("includeDesignations")))
    return await expand(cat, value_set, req, limit=call.settings.fhir_terminology_expansion_limit)


async def run_validate_code(call: Call) -> dict[str, Any]:
    cat = catalog(call)
    value_set = await _value_set(call, cat)
    params = dict(call.params)
    if params.get("systemVersion"):
        params["version"] = params["systemVersion"]
    codings = _codings(Call(repo=call.repo, settings=call.settings, services=None, params=params))
    plan = await plan_of(cat, value_set)
    return await validate(cat, plan, codings, _label(value_set))


async def run_translate(call: Call) -> dict[str, Any]:
    cat = catalog(call)
    maps: list[dict[str, Any]] | None = None
    if call.id_ is not None:
        maps = [await cat.read("ConceptMap", call.id_)]
    elif call.params.get("conceptMap"):
        maps = [call.one("conceptMap")]
    elif call.params.get("url"):
        url, version = call.one("url"), call.one("conceptMapVersion")
        maps = [await cat.must_find("ConceptMap", f"{url}|{version}" if version else url, "url")]
    given = one_of(call.params, "code", "coding", "codeableConcept")
    if given == "codeableConcept":
        codings = [c for c in call.one("codeableConcept").get("coding") or []
                   if isinstance(c, dict)]
    else:
        coding = coding_of(call.params)
        codings = [coding] if coding else []
    if not codings:
        raise Invalid("$translate needs a code (with system), a coding or a codeableConcept",
                      expression=["code"])
    reverse = bool(call.one("reverse"))
    answers = [await translate(cat, maps, c, reverse=reverse, target=call.one("target"),
                               target_system=call.one("targetsystem")) for c in codings]
    found = [a for a in answers if a["parameter"][0]["valueBoolean"]]
    if len(answers) == 1 or not found:
        return answers[0]
    return {"resourceType": "Parameters", "parameter": [
        {"name": "result", "valueBoolean": True},
        *[p for a in found for p in a["parameter"] if p["name"] == "match"]]}


_READ_VS = (("ValueSet", "r"),)

EXPAND = Operation(
    id="ValueSet-expand", code="expand", title="Value set expansion",
    description="The codes of a value set (compose include/exclude, concept lists, filters "
    "is-a, descendent-of, is-not-a, =, in, regex, exists, imported value sets), a page at a "
    "time (offset, count), narrowed by a text filter; expansion.total is always the full "
    "count. Larger than FHIR_TERMINOLOGY_EXPANSION_LIMIT without count: 400 too-costly; "
    "longer than FHIR_TERMINOLOGY_EXPANSION_TIMEOUT: 422 too-costly. A regex filter is RE2 "
    "syntax matching the whole value, at most FHIR_TERMINOLOGY_REGEX_MAX_LENGTH characters.",
    resource=("ValueSet",), type_level=True, instance=True, affects_state=False,
    base=f"{R4}/ValueSet-expand", requires=_READ_VS, resource_body="valueSet",
    parameters=(
        Param("url", "in", 0, "1", "uri", "The value set's canonical url"),
        Param("valueSet", "in", 0, "1", "ValueSet", "A value set given in the request"),
        Param("valueSetVersion", "in", 0, "1", "string", "The value set's version"),
        Param("filter", "in", 0, "1", "string",
              "Words, each the start of a word of the display, a designation or the code"),
        Param("offset", "in", 0, "1", "integer", "Codes to skip (paging)"),
        Param("count", "in", 0, "1", "integer", "Codes to return (paging)"),
        Param("includeDesignations", "in", 0, "1", "boolean", "Return designations too"),
        Param("activeOnly", "in", 0, "1", "boolean", "Only active codes"),
        Param("return", "out", 1, "1", "ValueSet", "The value set with its expansion"),
    ),
    run=run_expand)

VALUE_SET_VALIDATE = Operation(
    id="ValueSet-validate-code", code="validate-code", title="Value set validation",
    description="Whether a code (a coding, or any coding of a CodeableConcept) is in a value "
    "set, and whether its display is right.",
    resource=("ValueSet",), type_level=True, instance=True, affects_state=False,
    base=f"{R4}/ValueSet-validate-code", requires=_READ_VS, resource_body="valueSet",
    parameters=(
        Param("url", "in", 0, "1", "uri", "The value set's canonical url"),
        Param("valueSet", "in", 0, "1", "ValueSet", "A value set given in the request"),
        Param("valueSetVersion", "in", 0, "1", "string", "The value set's version"),
        Param("code", "in", 0, "1", "code", "The code"),
        Param("system", "in", 0, "1", "uri", "The code's system"),
        Param("systemVersion", "in", 0, "1", "string", "The code system's version"),
        Param("display", "in", 0, "1", "string", "The display to check"),
        Param("coding", "in", 0, "1", "Coding", "The code as a Coding"),
        Param("codeableConcept", "in", 0, "1", "CodeableConcept", "Codes, any one valid"),
        Param("result", "out", 1, "1", "boolean", "Whether the code is in the value set"),
        Param("message", "out", 0, "1", "string", "Why not, or a note"),
        Param("display", "out", 0, "1", "string", "The code's display"),
    ),
    run=run_validate_code)

TRANSLATE = Operation(
    id="ConceptMap-translate", code="translate", title="Concept translation",
    description="The codes a concept map maps a code to (reverse: from). Without url or "
    "instance, every map that has the code is used.",
    resource=("ConceptMap",), type_level=True, instance=True, affects_state=False,
    base=f"{R4}/ConceptMap-translate", requires=(("ConceptMap", "r"),),
    resource_body="conceptMap",
    parameters=(
        Param("url", "in", 0, "1", "uri", "The concept map's canonical url"),
        Param("conceptMap", "in", 0, "1", "ConceptMap", "A concept map given in the request"),
        Param("conceptMapVersion", "in", 0, "1", "string", "The concept map's version"),
        Param("code", "in", 0, "1", "code", "The code to translate"),
        Param("system", "in", 0, "1", "uri", "The code's system"),
        Param("version", "in", 0, "1", "string", "The code system's version"),
        Param("coding", "in", 0, "1", "Coding", "The code as a Coding"),
        Param("codeableConcept", "in", 0, "1", "CodeableConcept", "Codes to translate"),
        Param("target", "in", 0, "1", "uri", "The value set to translate into"),
        Param("targetsystem", "in", 0, "1", "uri", "The code system to translate into"),
        Param("reverse", "in", 0, "1", "boolean", "Translate from the target to the source"),
        Param("result", "out", 1, "1", "boolean", "Whether a mapping was found"),
        Param("message", "out", 0, "1", "string", "Why not"),
        Param("match", "out", 0, "*", None, "A mapping", parts=(
            Param("equivalence", "out", 0, "1", "code"),
            Param("concept", "out", 0, "1", "Coding"),
            Param("source", "out", 0, "1", "uri"))),
    ),
    run=run_translate)
