"""Judging one resource's stored search values against a query, in Python.

Used where there is no database row to ask: the new content of a write, a
historical version (versions keep no search values), and engines that cannot
run part of a query (FerretDB's ``$elemMatch`` over sub-documents). Chains,
``_has`` and code sets (``KeysInSet``) must have been resolved first
(``storage/resolve.py``): they are plain ``Keys``, ``NoKeys`` and ``Ids`` then.

Instants compare at millisecond precision, as every engine stores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fhir_server.search.query import (
    AllOf,
    And,
    AnyOf,
    Chain,
    Cmp,
    Cond,
    Contains,
    Element,
    Has,
    Ids,
    Keys,
    KeysInSet,
    NoKeys,
    Or,
    Prefix,
    Query,
    Updated,
)


def _ms(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def _compare(op: str, have: Any, want: Any) -> bool:
    have, want = _ms(have), _ms(want)
    try:
        if op == "eq":
            return bool(have == want)
        if op == "lt":
            return bool(have < want)
        if op == "le":
            return bool(have <= want)
        if op == "gt":
            return bool(have > want)
        if op == "ge":
            return bool(have >= want)
    except TypeError:  # values of different kinds never compare
        return False
    raise ValueError(op)


def satisfies(element: Mapping[str, Any], cond: Cond) -> bool:
    """Whether one element (a date range, a number, a quantity...) meets the condition."""
    if isinstance(cond, Cmp):
        have = element.get(cond.field)
        return have is not None and _compare(cond.op, have, cond.value)
    if isinstance(cond, AllOf):
        return all(satisfies(element, c) for c in cond.conds)
    if isinstance(cond, AnyOf):
        return any(satisfies(element, c) for c in cond.conds)
    raise TypeError(cond)


def evaluate(query: Query, *, id_: str, index: Mapping[str, Any],
             ts: datetime | None = None) -> bool:
    """Whether the resource ``id_`` whose search values are ``index`` (``extract.py``),
    in its version of instant ``ts`` (None: unknown, no ``_lastUpdated`` condition holds),
    matches the query."""
    ix = index
    if isinstance(query, And):
        return all(evaluate(q, id_=id_, index=ix, ts=ts) for q in query.parts)
    if isinstance(query, Or):
        return any(evaluate(q, id_=id_, index=ix, ts=ts) for q in query.parts)
    if isinstance(query, Keys):
        wanted = set(query.keys)
        return any(v in wanted for v in ix.get(query.kind, ()))
    if isinstance(query, NoKeys):
        unwanted = set(query.keys)
        return not any(v in unwanted for v in ix.get(query.kind, ()))
    if isinstance(query, Prefix):
        return any(isinstance(v, str) and v.startswith(query.prefix)
                   for v in ix.get(query.kind, ()))
    if isinstance(query, Contains):
        start = len(query.prefix)
        return any(isinstance(v, str) and v.startswith(query.prefix) and query.text in v[start:]
                   for v in ix.get(query.kind, ()))
    if isinstance(query, Element):
        return any(e.get("p") == query.param and satisfies(e, query.cond)
                   for e in ix.get(query.kind, ()))
    if isinstance(query, Ids):
        return (id_ in query.ids) != query.negate
    if isinstance(query, Updated):
        return ts is not None and satisfies({"ts": ts}, query.cond)
    if isinstance(query, Chain | Has | KeysInSet):
        raise ValueError("resolve chains, _has and code sets before evaluating a query")
    raise TypeError(query)
