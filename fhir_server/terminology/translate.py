"""``ConceptMap/$translate``: the codes a ConceptMap maps a code to (or from, ``reverse``).

Without a map named (``url``, ``conceptMap`` or the instance), the maps that
mention the code are found by search (``source-code``, or ``target-code`` in
reverse: an indexed token parameter), and narrowed to those whose groups' systems
and target value set (``target``, ``targetsystem``) fit.
"""

from __future__ import annotations

from typing import Any

from fhir_server.core.errors import Invalid
from fhir_server.terminology.catalog import Catalog

UNMATCHED = frozenset({"unmatched", "disjoint"})


def _groups(cmap: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in cmap.get("group") or [] if isinstance(g, dict)]


def matches_in(cmap: dict[str, Any], system: str | None, code: str, *, reverse: bool,
               target_system: str | None) -> list[dict[str, Any]]:
    """The ``match`` parts of one map for one code."""
    url = cmap.get("url")
    out: list[dict[str, Any]] = []
    for group in _groups(cmap):
        src, dst = group.get("source"), group.get("target")
        if reverse:
            src, dst = dst, src
        if system is not None and src not in (None, system):
            continue
        if target_system is not None and dst not in (None, target_system):
            continue
        for element in group.get("element") or []:
            for target in element.get("target") or []:
                if reverse:
                    here, there = target.get("code"), element.get("code")
                    there_display = element.get("display")
                else:
                    here, there = element.get("code"), target.get("code")
                    there_display = target.get("display")
                if here != code:
                    continue
                equivalence = target.get("equivalence", "equivalent")
                part: list[dict[str, Any]] = [{"name": "equivalence", "valueCode": equivalence}]
                if there is not None and equivalence not in UNMATCHED:
                    coding = {k: v for k, v in (("system", dst), ("code", there),
                                                ("display", there_display)) if v}
                    part.append({"name": "concept", "valueCoding": coding})
                if url:
                    part.append({"name": "source", "valueUri": url})
                out.append({"name": "match", "part": part})
    return out


async def maps_for(catalog: Catalog, system: str | None, code: str, *, reverse: bool,
                   target: str | None) -> list[dict[str, Any]]:
    # Element codes are indexed without a system (the group holds it): search by the code,
    # then the group's system decides (matches_in).
    side = "target" if reverse else "source"
    found = [await catalog.read("ConceptMap", i)
             for i in await catalog.ids("ConceptMap", [(f"{side}-code", code)])]
    if target is None:
        return found
    end = "source" if reverse else "target"
    return [m for m in found if target in (m.get(f"{end}Uri"), m.get(f"{end}Canonical"))]


def answer(matches: list[dict[str, Any]], code: str) -> dict[str, Any]:
    found = any(p["name"] == "concept" for m in matches for p in m["part"])
    params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": found}]
    if not found:
        params.append({"name": "message", "valueString":
                       f"No mapping of the code '{code}' was found"})
    return {"resourceType": "Parameters", "parameter": params + matches}


async def translate(catalog: Catalog, maps: list[dict[str, Any]] | None, coding: dict[str, Any],
                    *, reverse: bool, target: str | None, target_system: str | None
                    ) -> dict[str, Any]:
    code = coding.get("code")
    if not isinstance(code, str) or not code:
        raise Invalid("$translate needs a code (code and system, coding or codeableConcept)",
                      expression=["code"])
    system = coding.get("system") if isinstance(coding.get("system"), str) else None
    if maps is None:
        maps = await maps_for(catalog, system, code, reverse=reverse, target=target)
    matches = [m for cmap in maps for m in matches_in(cmap, system, code, reverse=reverse,
                                                       target_system=target_system)]
    return answer(matches, code)
