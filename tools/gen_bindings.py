"""Generate fhir_server/data/required_bindings.json from the FHIR R4 value sets.

The R4B models name the codes of each required binding (``enum_values``) but
do not enforce them, and their lists are R4B's (a few differ from R4) and are
sometimes cut short with ``+``. This script keeps a code list only when R4's
own definitions (``valuesets.json``, FHIR 4.0.1) confirm it: an R4 code system
or value set with exactly those codes, or, for a cut-short list, the one R4
code system that contains every listed code. Anything else is left unchecked.

Run: python tools/gen_bindings.py [path/to/valuesets.json]
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path

from data_sets import definition_path, read_json
from fhir.resources import R4B
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = definition_path("valuesets.json")
TARGET = ROOT / "fhir_server" / "data" / "required_bindings.json"


def _flatten(concepts: list[dict]) -> Iterator[str]:
    for concept in concepts:
        yield concept["code"]
        yield from _flatten(concept.get("concept", []))


def r4_code_sets(source: Path) -> tuple[list[tuple[str, frozenset[str]]], list[frozenset[str]]]:
    bundle = read_json(source)
    systems: list[tuple[str, frozenset[str]]] = []
    everything: list[frozenset[str]] = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "CodeSystem" and res.get("content") == "complete":
            codes = frozenset(_flatten(res.get("concept", [])))
            systems.append((res["url"], codes))
            everything.append(codes)
        elif res["resourceType"] == "ValueSet":
            codes = frozenset(
                c["code"]
                for inc in res.get("compose", {}).get("include", [])
                for c in inc.get("concept", [])
            )
            if codes:
                everything.append(codes)
    return systems, everything


def model_fields() -> Iterator[tuple[str, str, list[str]]]:
    for info in pkgutil.iter_modules(R4B.__path__):
        module = importlib.import_module(f"{R4B.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
                continue
            if obj.__module__ != module.__name__:
                continue
            for field in obj.model_fields.values():
                extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
                codes = extra.get("enum_values")
                if isinstance(codes, list) and codes:
                    yield name, field.alias or "", [str(c) for c in codes]


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    systems, everything = r4_code_sets(source)
    table: dict[str, list[str]] = {}
    skipped = 0
    for cls, alias, codes in model_fields():
        listed = frozenset(c for c in codes if c not in {"+", "etc."})
        if "+" in codes:
            supersets = {s for _, s in systems if listed <= s}
            chosen = next(iter(supersets)) if len(supersets) == 1 else None
        elif "etc." in codes:
            chosen = None
        else:
            chosen = listed if listed in everything else None
        if chosen is None:
            skipped += 1
            continue
        table[f"{cls}.{alias}"] = sorted(chosen)
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(json.dumps(table, indent=0, sort_keys=True) + "\n")
    where = TARGET.relative_to(ROOT)
    print(f"{len(table)} required bindings written to {where}; {skipped} left unchecked")


if __name__ == "__main__":
    main()
