"""Before a search runs: the codes of ``:in``/``:not-in`` value sets and ``:below``/``:above``
hierarchies made stored sets the engines can join on or read.

``prepare`` replaces each ``ValueSetCodes`` by a ``StoredSet`` (the value set
expanded by the terminology service into the concept store, once per version of
its content) and each ``HierarchyCodes`` by a ``StoredHierarchy`` (the code
system's current generation in the concept store). Chains and ``_has`` are
walked too. Every path that runs a compiled search calls it: the search
interaction, conditional interactions and operations (``interactions.py``), and
access restrictions (``auth/access.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.search.query import (
    And,
    Chain,
    CodeSource,
    Has,
    HierarchyCodes,
    KeysInSet,
    Or,
    Query,
    ValueSetCodes,
    walk,
)

if TYPE_CHECKING:
    from fhir_server.core.config import Settings
    from fhir_server.storage.repository import Repository


def needs_codes(query: Query) -> bool:
    return any(isinstance(n, KeysInSet) and isinstance(n.source, ValueSetCodes | HierarchyCodes)
               for n in walk(query))


async def prepare(repo: Repository, settings: Settings, query: Query) -> Query:
    if not needs_codes(query):
        return query
    from fhir_server.terminology.code_sets import CodeSets  # the terminology service, above the search layer

    sets = CodeSets(repo=repo, settings=settings)
    return await _map(query, sets.stored)


async def _map(query: Query, stored: object) -> Query:
    if isinstance(query, And | Or):
        return type(query)(tuple([await _map(p, stored) for p in query.parts]))
    if isinstance(query, Chain):
        return Chain(query.param, query.target, await _map(query.inner, stored))
    if isinstance(query, Has):
        return Has(query.source, query.param, query.type_, await _map(query.inner, stored))
    if isinstance(query, KeysInSet) and isinstance(query.source, ValueSetCodes | HierarchyCodes):
        source: CodeSource = await stored(query.param, query.source)  # type: ignore[operator]
        return KeysInSet(query.kind, query.param, source, query.negate)
    return query
