"""Generate fhir_server/data/search_parameters.json from the official R4 SearchParameters.

For every resource type, each search parameter keeps what the search engine
needs: its type, the part of the FHIRPath expression that applies to that
type, its reference targets, its composite components, and the sentence of
its description that concerns that type. Parameters without an expression
(``_content``, ``_text``, ``_query``, ...) are left out: nothing can be
extracted for them.

Run: python tools/gen_search_registry.py [path/to/search-parameters.json]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from data_sets import definition_path, read_json

from fhir_server.search.registry import split_union

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = definition_path("search-parameters.json")
TARGET = ROOT / "fhir_server" / "data" / "search_parameters.json"
COMPARTMENT_SOURCE = definition_path("compartmentdefinition-patient.json")
COMPARTMENT_TARGET = ROOT / "fhir_server" / "data" / "compartment_patient.json"
ABSTRACT_BASES = {"Resource", "DomainResource"}
# Parameters this server adds to R4's (the revenue-cycle lookups need them).
SERVER_SOURCE = ROOT / "tools" / "server_search_parameters.json"


def root_of(part: str) -> str:
    match = re.match(r"^\(*\s*([A-Za-z]+)", part)
    return match.group(1) if match else ""


def expression_for(expression: str, base: str) -> str:
    branches = split_union(expression)
    parts = [p for p in branches if root_of(p) in {base, *ABSTRACT_BASES}]
    if not parts and all(root_of(p)[:1].islower() for p in branches):
        # A few definitions are written relative to their base ("name | alias").
        parts = [f"{base}.{p}" for p in branches]
    return " | ".join(parts)


def description_for(description: str, base: str, multi: bool) -> str:
    if not multi:
        return description.strip()
    for line in description.splitlines():
        if line.startswith(f"* [{base}]"):
            return line.split("):", 1)[-1].strip()
    return description.split("\n", 1)[0].strip().rstrip(":")


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    entries = [e["resource"] for e in read_json(source)["entry"]]
    entries += [e["resource"] for e in json.loads(SERVER_SOURCE.read_text())["entry"]]
    by_url = {sp["url"]: sp for sp in entries}
    registry: dict[str, dict[str, Any]] = {}
    for sp in entries:
        if not sp.get("expression") or sp["type"] == "special":
            continue
        bases = sp["base"]
        for base in bases:
            expr = expression_for(sp["expression"], base)
            if not expr:
                continue
            param: dict[str, Any] = {
                "type": sp["type"],
                "expression": expr,
                "url": sp["url"],
                "description": description_for(sp.get("description", ""), base, len(bases) > 1),
            }
            if sp.get("target"):
                param["target"] = sorted(sp["target"])
            if sp.get("component"):
                param["component"] = [
                    {"code": by_url[c["definition"]]["code"],
                     "type": by_url[c["definition"]]["type"],
                     "expression": c["expression"]}
                    for c in sp["component"]
                ]
            registry.setdefault(base, {})[sp["code"]] = param
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    ordered = {base: dict(sorted(params.items())) for base, params in sorted(registry.items())}
    TARGET.write_text(json.dumps(ordered, indent=1, sort_keys=False) + "\n")
    compartment = read_json(COMPARTMENT_SOURCE)
    members = {r["code"]: r["param"] for r in compartment["resource"] if r.get("param")}
    COMPARTMENT_TARGET.write_text(json.dumps(members, indent=1, sort_keys=True) + "\n")
    count = sum(len(p) for p in registry.values())
    print(f"{count} parameters for {len(registry)} bases written to {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
