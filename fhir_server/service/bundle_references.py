"""References inside a transaction Bundle: the conditional ones to resolve, and the rewrite of
every reference to an entry's local fullUrl (``urn:uuid:``/``urn:oid:``) into ``Type/id``.

Both walk whole resources in pure Python, so for a large Bundle they take hundreds of
milliseconds: ``fhir_server/service/bundles.py`` runs them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LOCAL_PREFIXES = ("urn:uuid:", "urn:oid:")
Resource = dict[str, Any]


def conditional_references(resources: Sequence[Resource | None]) -> list[set[str]]:
    """Each resource's conditional references (``Patient?identifier=...``)."""
    out = []
    for resource in resources:
        found: set[str] = set()
        _conditional(resource, found)
        out.append(found)
    return out


def _conditional(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and "?" in ref and not ref.startswith(("http:", "https:")):
            found.add(ref)
        for v in value.values():
            _conditional(v, found)
    elif isinstance(value, list):
        for v in value:
            _conditional(v, found)


def rewritten(resources: Sequence[Resource | None],
              mapping: dict[str, str]) -> list[Resource | None]:
    """Copies of the resources with every reference in ``mapping`` replaced (``_rewrite``
    builds new containers; strings and numbers are immutable)."""
    return [None if r is None else _rewrite(r, mapping) for r in resources]


def _rewrite(value: Any, mapping: dict[str, str]) -> Any:
    """Replace references to local fullUrls everywhere (extensions and nested elements too)."""
    if isinstance(value, dict):
        out = {k: _rewrite(v, mapping) for k, v in value.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in mapping:
            out["reference"] = mapping[ref]
        return out
    if isinstance(value, list):
        return [_rewrite(v, mapping) for v in value]
    if isinstance(value, str) and value in mapping and value.startswith(LOCAL_PREFIXES):
        return mapping[value]  # canonical/uri elements holding a local fullUrl
    return value
