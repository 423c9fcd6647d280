"""What is loaded: every CodeSystem, ValueSet and ConceptMap of FHIR R4 4.0.1, served as
ordinary resources, and ICD-10-CM (expectations from the published files and the package)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
import simple_icd_10_cm as cm

from fhir_server.core.config import Settings
from fhir_server.service.validation import validate_resource
from tests.support.terminology import ICD, packaged, raw

FILES = ("valuesets.json", "v2-tables.json", "v3-codesystems.json", "conceptmaps.json")
TYPES = ("CodeSystem", "ValueSet", "ConceptMap")


def published() -> list[dict[str, Any]]:
    return [r for name in FILES for r in raw(name) if r["resourceType"] in TYPES]


def without_comment_translations(value: Any) -> Any:
    """The one change the packaged copy makes (tools/gen_terminology.py): an extension's
    ``_valueString`` is dropped, and an extension left with nothing but its url."""
    if isinstance(value, dict):
        return {k: without_comment_translations(v) for k, v in value.items()
                if not ("url" in value and k.startswith("_value"))}
    if isinstance(value, list):
        out = [without_comment_translations(v) for v in value]
        return [v for v in out if not (isinstance(v, dict) and list(v) == ["url"])]
    return value


def test_the_packaged_content_is_the_published_definitions() -> None:
    mine = {(r["resourceType"], r["id"]): r for r in packaged()}
    theirs = {(r["resourceType"], r["id"]): r for r in published()}
    assert set(mine) == set(theirs)
    changed = [k for k, r in theirs.items() if mine[k] != r]
    assert changed  # the v2 tables with translated comments
    for k in changed:
        assert mine[k] == without_comment_translations(theirs[k]), k


@pytest.mark.slow
def test_every_packaged_resource_validates() -> None:
    import json

    for r in packaged():
        validate_resource(json.loads(json.dumps(r), parse_float=Decimal),
                          max_depth=Settings().fhir_max_json_depth)


async def total(tx: httpx.AsyncClient, query: str) -> int:
    r = await tx.get(query)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


async def test_served_as_ordinary_resources(tx: httpx.AsyncClient) -> None:
    counts = {t: sum(1 for r in published() if r["resourceType"] == t) for t in TYPES}
    assert await total(tx, "CodeSystem?_summary=count") == counts["CodeSystem"] + 1  # ICD-10-CM
    assert await total(tx, "ValueSet?_summary=count") >= counts["ValueSet"]
    assert await total(tx, "ConceptMap?_summary=count") >= counts["ConceptMap"]
    gender = next(r for r in raw("valuesets.json") if r["resourceType"] == "ValueSet"
                  and r["id"] == "administrative-gender")
    found = (await tx.get("ValueSet", params={"url": gender["url"]})).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["administrative-gender"]
    r = await tx.get("CodeSystem/v2-0001")
    assert r.status_code == 200
    assert r.json()["concept"] == next(c for c in raw("v2-tables.json") if c["id"] == "v2-0001"
                                       and c["resourceType"] == "CodeSystem")["concept"]
    v3 = await total(tx, "CodeSystem?url=http://terminology.hl7.org/CodeSystem/v3-ActCode")
    assert v3 == 1


async def test_icd10cm_code_system(tx: httpx.AsyncClient) -> None:
    r = await tx.get("CodeSystem", params={"url": ICD})
    resource = r.json()["entry"][0]["resource"]
    assert resource["content"] == "not-present"
    assert resource["count"] == len(cm.get_all_codes(True))
    assert resource["hierarchyMeaning"] == "is-a"


async def test_operations_are_declared(tx: httpx.AsyncClient) -> None:
    meta = (await tx.get("metadata")).json()
    listed = {(r["type"], op["name"]) for r in meta["rest"][0]["resource"]
              for op in r.get("operation", [])}
    wanted = {("CodeSystem", "lookup"), ("CodeSystem", "validate-code"),
              ("CodeSystem", "subsumes"), ("ValueSet", "expand"), ("ValueSet", "validate-code"),
              ("ConceptMap", "translate"), ("ChargeItemDefinition", "apply")}
    assert wanted <= listed
    for id_ in ("CodeSystem-lookup", "ValueSet-expand", "ConceptMap-translate",
                "ChargeItemDefinition-apply", "ValueSet-validate-code"):
        definition = (await tx.get(f"OperationDefinition/{id_}")).json()
        assert definition["base"] == f"http://hl7.org/fhir/OperationDefinition/{id_}"
        assert definition["affectsState"] is False
