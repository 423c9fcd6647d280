"""A small MongoDB filter evaluator, for engines that cannot run part of a filter.

FerretDB 1.24 rejects ``$elemMatch`` with field conditions on arrays of
sub-documents (and answers some forms wrongly). On such an engine the
repository sends the database only the conjuncts it runs correctly and
evaluates the whole compiled filter here, on the stored search values.
Only the operators the search compiler generates are supported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

_MISSING = object()


def _get(doc: Any, path: str) -> list[Any]:
    """Values at a dotted path, descending into arrays (multikey semantics)."""
    current = [doc]
    for part in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, Mapping) and part in item:
                value = item[part]
                nxt.extend(value if isinstance(value, list) else [value])
            elif isinstance(item, list):
                for sub in item:
                    if isinstance(sub, Mapping) and part in sub:
                        value = sub[part]
                        nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    return current


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _compare(op: str, value: Any, arg: Any) -> bool:
    try:
        if op == "$eq":
            return bool(value == arg)
        if op == "$ne":
            return bool(value != arg)
        if op == "$gt":
            return bool(value > arg)
        if op == "$gte":
            return bool(value >= arg)
        if op == "$lt":
            return bool(value < arg)
        if op == "$lte":
            return bool(value <= arg)
        if op == "$in":
            return value in arg
        if op == "$regex":
            return isinstance(value, str) and _regex(arg).search(value) is not None
    except TypeError:
        return False
    raise ValueError(f"unsupported operator {op}")


def _field_matches(values: list[Any], cond: Any) -> bool:
    if isinstance(cond, Mapping) and cond and all(str(k).startswith("$") for k in cond):
        for op, arg in cond.items():
            if op == "$elemMatch":
                if not any(_elem(v, arg) for v in values):
                    return False
            elif op == "$nin":
                if any(v in arg for v in values):
                    return False
            elif op == "$ne":
                if any(v == arg for v in values):
                    return False
            elif op == "$exists":
                if bool(values) != bool(arg):
                    return False
            elif not any(_compare(op, v, arg) for v in values):
                return False
        return True
    return any(v == cond for v in values)


def _elem(element: Any, cond: Mapping[str, Any]) -> bool:
    if cond and all(str(k).startswith("$") for k in cond):
        return all(_compare(op, element, arg) for op, arg in cond.items())
    return isinstance(element, Mapping) and matches(element, cond)


def matches(doc: Mapping[str, Any], filt: Mapping[str, Any]) -> bool:
    for key, cond in filt.items():
        if key == "$and":
            if not all(matches(doc, f) for f in cond):
                return False
        elif key == "$or":
            if not any(matches(doc, f) for f in cond):
                return False
        elif key == "$nor":
            if any(matches(doc, f) for f in cond):
                return False
        elif not _field_matches(_get(doc, key), cond):
            return False
    return True


def has_subdocument_elem_match(filt: Any) -> bool:
    """Whether a filter uses $elemMatch with field conditions (sub-documents)."""
    if isinstance(filt, Mapping):
        for key, value in filt.items():
            if key == "$elemMatch" and isinstance(value, Mapping) and any(
                    not str(k).startswith("$") for k in value):
                return True
            if has_subdocument_elem_match(value):
                return True
    elif isinstance(filt, list):
        return any(has_subdocument_elem_match(v) for v in filt)
    return False


def pushable_part(filt: Mapping[str, Any]) -> dict[str, Any]:
    """The conjuncts of a filter that contain no sub-document $elemMatch (a superset filter)."""
    conjuncts = list(filt["$and"]) if set(filt) == {"$and"} else [{k: v} for k, v in filt.items()]
    kept = [c for c in conjuncts if not has_subdocument_elem_match(c)]
    if not kept:
        return {}
    return kept[0] if len(kept) == 1 else {"$and": kept}
