"""Running the inner searches of chains and ``_has`` first, for engines without joins.

``resolve`` replaces every ``Chain`` by the reference keys of the target
resources its inner query matches, every ``Has`` by the ids its source
resources refer to, and every ``KeysInSet`` (a stored code set or hierarchy) by
its token keys, so that what is left is a plain query (for the MongoDB filter
compiler and for ``evaluate.py``). The SQLite engine joins instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.core.errors import Invalid
from fhir_server.search.normalize import key
from fhir_server.search.query import (
    EVERYTHING,
    NOTHING,
    And,
    Chain,
    Has,
    Ids,
    Keys,
    KeysInSet,
    NoKeys,
    Or,
    Query,
    StoredHierarchy,
    StoredSet,
    and_,
    or_,
)

if TYPE_CHECKING:
    from fhir_server.storage.repository import Repository

MAX_INNER_IDS = 10_000  # an inner search matching more is refused as too costly


def needs_resolving(query: Query) -> bool:
    if isinstance(query, Chain | Has | KeysInSet):
        return True
    if isinstance(query, And | Or):
        return any(needs_resolving(q) for q in query.parts)
    return False


async def _inner_ids(repo: Repository, type_: str, query: Query) -> list[str]:
    ids = await repo.search(type_=type_, query=query, sort=(), limit=MAX_INNER_IDS + 1)
    if len(ids) > MAX_INNER_IDS:
        raise Invalid("A chained or _has search matches too many resources; narrow it",
                      code="too-costly")
    return ids


async def resolve(repo: Repository, query: Query) -> Query:
    """The query with its chains and ``_has`` replaced by keys and ids (searched on ``repo``)."""
    if isinstance(query, And):
        return and_(*[await resolve(repo, q) for q in query.parts])
    if isinstance(query, Or):
        return or_(*[await resolve(repo, q) for q in query.parts])
    if isinstance(query, Chain):
        inner = await resolve(repo, query.inner)
        ids = await _inner_ids(repo, query.target, inner)
        return Keys("rf", tuple(key(query.param, f"{query.target}/{i}") for i in ids))
    if isinstance(query, Has):
        inner = await resolve(repo, query.inner)
        ids = await _inner_ids(repo, query.source, inner)
        prefix = key(query.param, f"{query.type_}/")
        refs = await repo.references(type_=query.source, ids=ids, prefix=prefix)
        return Ids(tuple(sorted({r[len(prefix):] for found in refs.values() for r in found})))
    if isinstance(query, KeysInSet):
        return await _code_keys(repo, query)
    return query


async def _code_keys(repo: Repository, query: KeysInSet) -> Query:
    src = query.source
    if isinstance(src, StoredSet):
        keys = [key(query.param, sc) for sc in await repo.concepts.set_members(key=src.key)]
    elif isinstance(src, StoredHierarchy):
        codes = await repo.concepts.hierarchy(gens=src.gens, code=src.code, below=src.below)
        keys = [key(query.param, src.system, c) for c in codes]
    else:
        raise ValueError("resolve value sets and hierarchies first (service/search/codes.py)")
    if not keys:
        return EVERYTHING if query.negate else NOTHING
    return NoKeys(query.kind, tuple(keys)) if query.negate else Keys(query.kind, tuple(keys))
