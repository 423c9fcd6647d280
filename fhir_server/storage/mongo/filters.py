"""``search.query`` nodes -> MongoDB filters over the stored search values (``ix``).

Chains and ``_has`` are resolved before (``storage/resolve.py``): MongoDB has no
join that an index serves here, so their inner searches run first. Every other
node maps to one operator the per-kind multikey indexes serve (``SEARCH_INDEXES``
in ``indexes.py``): keys are equalities or ``$in``, prefixes anchored regular
expressions, elements ``$elemMatch`` over the sub-documents.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    SortKey,
    Updated,
)

Filter = dict[str, Any]
LIVE: Filter = {"json": {"$ne": None}}  # not a deletion
_OPS = {"eq": "$eq", "lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte"}
MATCH_NOTHING: Filter = {"_id": {"$in": []}}


def _cond(cond: Cond) -> Filter:
    """An element condition as the body of an ``$elemMatch`` (or a filter on ``ts``)."""
    if isinstance(cond, Cmp):
        return {cond.field: cond.value} if cond.op == "eq" else {
            cond.field: {_OPS[cond.op]: cond.value}}
    parts = [_cond(c) for c in cond.conds]
    if isinstance(cond, AllOf):
        merged: Filter = {}
        for part in parts:
            for field, test in part.items():
                if field in merged and isinstance(merged[field], dict) and isinstance(test, dict):
                    merged[field] = {**merged[field], **test}
                elif field in merged:
                    return {"$and": parts}
                else:
                    merged[field] = test
        return merged
    return {"$or": parts}


def _element(q: Element) -> Filter:
    """``$elemMatch``; an OR inside the condition becomes an OR of ``$elemMatch``es."""
    field = f"ix.{q.kind}"
    if isinstance(q.cond, AnyOf):
        return {"$or": [_element(Element(q.kind, q.param, c)) for c in q.cond.conds]}
    return {field: {"$elemMatch": {"p": q.param, **_cond(q.cond)}}}


def to_filter(query: Query) -> Filter:
    """The MongoDB filter of a query whose chains and ``_has`` have been resolved."""
    if isinstance(query, And):
        if not query.parts:
            return {}
        parts = [to_filter(q) for q in query.parts]
        return parts[0] if len(parts) == 1 else {"$and": parts}
    if isinstance(query, Or):
        if not query.parts:
            return MATCH_NOTHING
        parts = [to_filter(q) for q in query.parts]
        return parts[0] if len(parts) == 1 else {"$or": parts}
    if isinstance(query, Keys):
        field = f"ix.{query.kind}"
        return {field: query.keys[0]} if len(query.keys) == 1 else {field: {"$in": list(query.keys)}}
    if isinstance(query, NoKeys):
        field = f"ix.{query.kind}"
        return ({field: {"$ne": query.keys[0]}} if len(query.keys) == 1
                else {field: {"$nin": list(query.keys)}})
    if isinstance(query, Prefix):
        return {f"ix.{query.kind}": {"$regex": "^" + re.escape(query.prefix)}}
    if isinstance(query, Contains):
        return {f"ix.{query.kind}": {"$regex": "^" + re.escape(query.prefix) + ".*"
                                     + re.escape(query.text)}}
    if isinstance(query, Element):
        return _element(query)
    if isinstance(query, Ids):
        if query.negate:
            return {"_id": {"$nin": list(query.ids)}}
        return {"_id": query.ids[0]} if len(query.ids) == 1 else {"_id": {"$in": list(query.ids)}}
    if isinstance(query, Updated):
        return _cond(query.cond)
    if isinstance(query, Chain | Has | KeysInSet):
        raise ValueError("chains, _has and code sets are resolved before compiling a filter")
    raise TypeError(query)


def has_elements(query: Query) -> bool:
    """Whether the query has element conditions (``$elemMatch`` over sub-documents)."""
    if isinstance(query, Element):
        return True
    if isinstance(query, And | Or):
        return any(has_elements(q) for q in query.parts)
    return False


def without_elements(query: Query) -> Query:
    """The conjuncts without element conditions: a query matching a superset."""
    parts = query.parts if isinstance(query, And) else (query,)
    return And(tuple(p for p in parts if not has_elements(p)))


def search_filter(query: Query) -> Filter:
    """The filter a search runs with: the query's, on resources that are not deleted."""
    return {"$and": [to_filter(query), LIVE]} if query != And(()) else dict(LIVE)


def sort_fields(sort: Sequence[SortKey]) -> list[tuple[str, int]]:
    """MongoDB sort fields, ending with ``_id`` (in the last key's direction): a total order.
    A missing value sorts as null, before every value (the order ``Repository.search``
    states)."""
    fields: list[tuple[str, int]] = []
    for k in sort:
        path = {"_id": "_id", "_lastUpdated": "ts"}.get(k.name, f"ix.so.{k.name}")
        fields.append((path, -1 if k.descending else 1))
    if fields and not any(path == "_id" for path, _ in fields):
        fields.append(("_id", fields[-1][1]))
    return fields


def by_id(id_: str) -> Filter:
    """A current document by its id (reads and peeks): ``_id``, the shard key of a
    resource collection, and the one filter FerretDB pushes down."""
    return {"_id": id_}
