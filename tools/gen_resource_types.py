"""Generate fhir_server/data/resource_types.json: the resource types this server serves.

FHIR R4 (4.0.1) defines its resource types in the CodeSystem
``http://hl7.org/fhir/resource-types`` (in the definitions' ``valuesets.json``);
``Resource`` and ``DomainResource`` are its abstract bases. The server validates
with the ``fhir.resources`` R4B models, so it serves the R4 types that have an R4B
model: R4B's additions (Citation, Ingredient, SubscriptionTopic, ...) are not R4
and are not served, and R4 types that R4B dropped (MedicinalProduct*,
SubstanceSpecification, ...) cannot be validated and are not served either.

Run: python tools/gen_resource_types.py [path/to/valuesets.json]
"""

from __future__ import annotations

import json
import pkgutil
import sys
from pathlib import Path
from typing import Any

from data_sets import definition_path, read_json
from fhir.resources import R4B
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = definition_path("valuesets.json")
TARGET = ROOT / "fhir_server" / "data" / "resource_types.json"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
ABSTRACT = frozenset({"Resource", "DomainResource"})


def r4_types(source: Path) -> tuple[str, list[str]]:
    """(version, codes) of the R4 resource-types CodeSystem."""
    bundle = read_json(source)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "CodeSystem" and resource["url"] == RESOURCE_TYPES:
            return resource["version"], [c["code"] for c in resource["concept"]]
    raise SystemExit(f"{source} has no CodeSystem {RESOURCE_TYPES}")


def has_model(type_: str) -> bool:
    try:
        cls = get_fhir_model_class(type_)
    except (KeyError, ValueError, AttributeError, ImportError):
        return False
    return isinstance(cls, type) and issubclass(cls, Resource)


def r4b_types() -> set[str]:
    """Every concrete resource type the R4B models define (imports the whole package)."""
    found = set()
    for info in pkgutil.iter_modules(R4B.__path__):
        module = __import__(f"{R4B.__name__}.{info.name}", fromlist=["_"])
        for name, obj in vars(module).items():
            if (isinstance(obj, type) and obj.__module__ == module.__name__
                    and name.lower() == info.name and issubclass(obj, Resource)
                    and name not in ABSTRACT):
                found.add(name)
    return found


def table(source: Path) -> dict[str, Any]:
    version, codes = r4_types(source)
    concrete = sorted(set(codes) - ABSTRACT)
    served = [t for t in concrete if has_model(t)]
    return {
        "fhirVersion": version,
        "source": f"CodeSystem {RESOURCE_TYPES} {version}, with an R4B model in fhir.resources",
        "served": served,
        "r4WithoutModel": [t for t in concrete if t not in served],
        "r4bOnly": sorted(r4b_types() - set(concrete)),
    }


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    out = table(source)
    TARGET.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{TARGET.relative_to(ROOT)}: {len(out['served'])} served, "
          f"{len(out['r4WithoutModel'])} R4 types without a model, {len(out['r4bOnly'])} R4B-only")


if __name__ == "__main__":
    main()
