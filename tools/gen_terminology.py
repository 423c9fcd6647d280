"""Generate fhir_server/terminology/data/fhir-r4-terminology.ndjson.gz from the FHIR R4 (4.0.1) definitions.

Every CodeSystem and ValueSet of ``valuesets.json``, ``v2-tables.json`` and
``v3-codesystems.json``, and every ConceptMap of ``conceptmaps.json``, one
resource per line. The server loads them at its first start (``fhir-server
terminology load``). One change is made: 47 v2 code systems carry Dutch
translations of concept comments as ``_valueString`` inside an extension, which
the R4B models reject; those translations are dropped (with an extension left
with nothing else), so that every resource
validates (``tests/terminology/test_content.py`` checks it) and can be written
back as it is read.

Run: python tools/gen_terminology.py [path/to/fhir-r4-definitions]
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

from data_sets import DEFINITIONS, read_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = DEFINITIONS
TARGET = ROOT / "fhir_server" / "terminology" / "data" / "fhir-r4-terminology.ndjson.gz"
FILES = ("valuesets.json", "v2-tables.json", "v3-codesystems.json", "conceptmaps.json")
TYPES = ("CodeSystem", "ValueSet", "ConceptMap")


def _without_extension_primitives(value: Any) -> Any:
    """Drops ``_valueX`` (primitive extensions of an extension's value) everywhere, and the
    extensions left with nothing but their url."""
    if isinstance(value, dict):
        is_extension = "url" in value
        return {k: _without_extension_primitives(v) for k, v in value.items()
                if not (is_extension and k.startswith("_value"))}
    if isinstance(value, list):
        cleaned = [_without_extension_primitives(v) for v in value]
        return [v for v, was in zip(cleaned, value, strict=True)
                if not (isinstance(v, dict) and list(v) == ["url"] and v != was)]
    return value


def resources(source: Path) -> list[dict[str, Any]]:
    out = []
    for name in FILES:
        bundle = read_json(source / f"{name}.gz")
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] in TYPES:
                out.append(_without_extension_primitives(resource))
    out.sort(key=lambda r: (TYPES.index(r["resourceType"]), r["id"]))
    return out


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    found = resources(source)
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n"
                    for r in found)
    TARGET.write_bytes(gzip.compress(lines.encode(), compresslevel=9, mtime=0))
    print(f"wrote {len(found)} resources to {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
