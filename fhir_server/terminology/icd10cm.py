"""ICD-10-CM (public domain, CMS/NCHS) from the PyPI package ``simple-icd-10-cm``.

The package ships the CMS tabular list; its public API gives every item of the
hierarchy in tabular order: chapters (``1`` to ``22``), blocks (``A00-A09``),
categories (``A00``), subcategories (``A00.0``) and codes with a 7th character
(``S72.001A``). They become the concepts of ``http://hl7.org/fhir/sid/icd-10-cm``
with their parents, so that ``is-a``, ``:below`` and ``$subsumes`` follow the
tabular hierarchy.

A block made of one category has the category's name in the package (``B10``
is a block and a category); its concept code is the range ``B10-B10``, so that
every code is unique. Properties: ``kind`` (chapter, block, category,
subcategory, extension), ``billable`` (a leaf: valid on a claim), and
``notSelectable`` for chapters and blocks. The inclusion terms are designations,
so a text filter finds a code by them too.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.metadata import version as package_version
from typing import Any

from fhir_server.storage.concepts import ConceptRow

SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
RESOURCE_ID = "icd-10-cm"
PACKAGE = "simple-icd-10-cm"
SYNONYM = {"system": "http://snomed.info/sct", "code": "900000000000013009", "display": "Synonym"}


def _module() -> Any:
    import simple_icd_10_cm as cm  # parses the tabular XML on import (a few seconds)

    return cm


@cache
def data_version() -> str:
    """The release of the tabular data the package ships (``2026-04-01``), from its file."""
    cm = _module()
    name = str(cm.simple_icd_10_cm._classification_data_package_file_name)
    match = re.search(r"(January|February|March|April|May|June|July|August|September|"
                      r"October|November|December)-(\d{1,2})-(\d{4})", name)
    if not match:
        return package_version(PACKAGE)
    months = ["January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"]
    month = months.index(match.group(1)) + 1
    return f"{match.group(3)}-{month:02d}-{int(match.group(2)):02d}"


def _kind(cm: Any, name: str, is_block: bool) -> str:
    if cm.is_chapter(name):
        return "chapter"
    if is_block:
        return "block"
    if cm.is_extended_subcategory(name):
        return "extension"
    return "category" if cm.is_category(name) else "subcategory"


def block_code(name: str) -> str:
    """The concept code of a block: its range (``B10`` -> ``B10-B10``)."""
    return name if "-" in name else f"{name}-{name}"


def concepts() -> list[ConceptRow]:
    """Every item of the tabular list, in its order, with parents and ancestors."""
    cm = _module()
    rows: list[ConceptRow] = []
    ancestors: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()
    chapter = ""
    for name in cm.get_all_codes(True):
        is_block = name not in seen and cm.is_block(name)
        seen.add(name)
        code = block_code(name) if is_block else name
        kind = _kind(cm, name, is_block)
        if kind == "chapter":
            parent = None
            chapter = code
        elif kind == "block":
            parent = chapter
        else:
            found = cm.get_parent(name)
            # A category under a block of its own name: its parent is that block.
            parent = block_code(found) if (found == name or (cm.is_block(found)
                                           and not cm.is_category(found))) else found
        parents = (parent,) if parent else ()
        ancestors[code] = (parent, *ancestors[parent]) if parent else ()
        leaf = kind not in ("chapter", "block") and cm.is_leaf(name)
        properties: list[dict[str, Any]] = [{"code": "kind", "valueCode": kind},
                                            {"code": "billable", "valueBoolean": leaf}]
        if kind in ("chapter", "block"):
            properties.append({"code": "notSelectable", "valueBoolean": True})
        terms = cm.get_inclusion_term(name) if kind not in ("chapter", "block") else []
        rows.append(ConceptRow(
            code=code, display=cm.get_description(name), parents=parents,
            ancestors=ancestors[code], abstract=kind in ("chapter", "block"),
            designations=tuple({"use": SYNONYM, "value": t} for t in terms),
            properties=tuple(properties)))
    return rows


def code_system(count: int) -> dict[str, Any]:
    """The CodeSystem resource: its description, with the concepts kept in the concept store
    (``content`` not-present, as servers do for large code systems)."""
    return {
        "resourceType": "CodeSystem", "id": RESOURCE_ID, "url": SYSTEM,
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:2.16.840.1.113883.6.90"}],
        "version": data_version(), "name": "ICD10CM",
        "title": "International Classification of Diseases, Tenth Revision, Clinical Modification",
        "status": "active", "experimental": False,
        "publisher": "Centers for Medicare & Medicaid Services; National Center for Health "
                     "Statistics",
        "description": f"The ICD-10-CM tabular list ({data_version()}), from the Python package "
                       f"{PACKAGE} {package_version(PACKAGE)}: chapters, blocks, categories, "
                       "subcategories and codes with a 7th character. The concepts are served "
                       "through the terminology operations ($lookup, $expand, $validate-code, "
                       "$subsumes), not inline.",
        "copyright": "ICD-10-CM is in the public domain.",
        "caseSensitive": True, "hierarchyMeaning": "is-a", "compositional": False,
        "versionNeeded": False, "content": "not-present", "count": count,
        "filter": [
            {"code": "concept", "operator": ["is-a", "descendent-of", "is-not-a", "in", "regex",
                                             "generalizes"], "value": "a code"},
            {"code": "kind", "operator": ["=", "in"],
             "value": "chapter | block | category | subcategory | extension"},
            {"code": "billable", "operator": ["="], "value": "true | false"},
        ],
        "property": [
            {"code": "parent", "uri": "http://hl7.org/fhir/concept-properties#parent",
             "type": "code", "description": "The item above in the tabular list"},
            {"code": "child", "uri": "http://hl7.org/fhir/concept-properties#child",
             "type": "code", "description": "The items below in the tabular list"},
            {"code": "kind", "type": "code",
             "description": "chapter, block, category, subcategory or extension (7th character)"},
            {"code": "billable", "type": "boolean",
             "description": "A code with nothing below it: valid on a claim"},
            {"code": "notSelectable", "uri": "http://hl7.org/fhir/concept-properties#notSelectable",
             "type": "boolean", "description": "Chapters and blocks group codes"},
        ],
    }


def source_label() -> str:
    return f"{PACKAGE} {package_version(PACKAGE)} ({data_version()})"
