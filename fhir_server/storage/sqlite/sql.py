"""``search.query`` nodes -> SQL over the index tables (``database.py``).

A query over one type becomes::

    SELECT r.id FROM resources r
    WHERE <type> AND r.json IS NOT NULL AND <driver> AND <probes>

The *driver* is one positive condition turned into the set of matching row
ids, read from an index (``r.rid IN (SELECT rid FROM ix_tk WHERE type = ? AND
key IN (...))``); when there is one, ``+r.type`` keeps SQLite from scanning the
type instead. Every other condition is a *probe* of the candidate rows by
their primary key (``EXISTS (SELECT 1 FROM ix_dt WHERE rid = r.rid AND ...)``),
so a query costs about what its most selective index lookup costs, whatever
the size of the table. Chains and ``_has`` are index joins: their inner query
compiles the same way, one level down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.search.normalize import key
from fhir_server.search.query import (
    EVERYTHING,
    AllOf,
    And,
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
    StoredHierarchy,
    StoredSet,
    Updated,
)
from fhir_server.storage.sqlite.rows import TIER_SPANS, sql_value

_OPS = {"eq": "=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
Bounds = dict[str, tuple[Any, Any]]  # field -> (lowest, highest) a condition lets it be


def successor(prefix: str) -> str:
    """The least string above every string that starts with ``prefix``."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last == 0xD800:
            last = 0xE000  # skip the surrogates, which UTF-8 cannot hold
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return "\U0010ffff"


@dataclass
class Sql:
    """A statement being built: its named parameters (so pieces can be built in any order)."""

    params: dict[str, Any] = field(default_factory=dict)
    aliases: int = 0

    def alias(self) -> str:
        self.aliases += 1
        return f"t{self.aliases}"

    def p(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = sql_value(value)
        return ":" + name

    def ps(self, values: tuple[Any, ...] | list[Any]) -> str:
        return ", ".join(self.p(v) for v in values)


# -- element conditions -----------------------------------------------------------------

def _cond(sql: Sql, cond: Cond, col: str) -> str:
    if isinstance(cond, Cmp):
        return f"{col}{cond.field} {_OPS[cond.op]} {sql.p(cond.value)}"
    parts = [_cond(sql, c, col) for c in cond.conds]
    return "(" + (" AND " if isinstance(cond, AllOf) else " OR ").join(parts) + ")"


def bounds(cond: Cond) -> Bounds:
    """The range each field must lie in for a condition to hold (bounds inclusive, None for
    unbounded), with what ``lo <= hi`` implies: every stored range has it."""
    out: Bounds = {}
    if isinstance(cond, Cmp):
        v = cond.value
        out[cond.field] = (v if cond.op in ("eq", "ge", "gt") else None,
                           v if cond.op in ("eq", "le", "lt") else None)
    elif isinstance(cond, AllOf):
        for part in map(bounds, cond.conds):
            for f, (low, high) in part.items():
                was_low, was_high = out.get(f, (None, None))
                out[f] = (low if was_low is None else was_low if low is None else max(low, was_low),
                          high if was_high is None else was_high if high is None
                          else min(high, was_high))
    else:
        parts = [bounds(c) for c in cond.conds]
        for f in set.intersection(*(set(p) for p in parts)) if parts else ():
            lows, highs = [p[f][0] for p in parts], [p[f][1] for p in parts]
            out[f] = (None if None in lows else min(lows), None if None in highs else max(highs))
    lo_low, lo_high = out.get("lo", (None, None))
    hi_low, hi_high = out.get("hi", (None, None))
    if lo_low is not None and (hi_low is None or lo_low > hi_low):
        out["hi"] = (lo_low, hi_high)
    if hi_high is not None and (lo_high is None or hi_high < lo_high):
        out["lo"] = (lo_low, hi_high)
    return out


# -- positive conditions as sets of row ids (drivers) -----------------------------------

def _is_set(q: Query) -> bool:
    """Whether a condition can be read as a set of row ids from an index."""
    if isinstance(q, Keys | Prefix | Contains | Element | Updated | Chain | Has):
        return True
    if isinstance(q, KeysInSet):
        return not q.negate
    if isinstance(q, Ids):
        return not q.negate
    if isinstance(q, Or):
        return bool(q.parts) and all(_is_set(p) for p in q.parts)
    if isinstance(q, And):
        return any(_is_set(p) for p in q.parts)
    return False


def _key_range(sql: Sql, prefix: str, col: str = "key") -> str:
    return f"{col} >= {sql.p(prefix)} AND {col} < {sql.p(successor(prefix))}"


def _set(sql: Sql, q: Query, type_: str) -> str:
    """SELECT of the row ids of ``type_`` resources satisfying a positive condition."""
    if isinstance(q, Keys):
        return (f"SELECT rid FROM ix_{q.kind} WHERE type = {sql.p(type_)} "
                f"AND key IN ({sql.ps(q.keys)})")
    if isinstance(q, Prefix):
        return (f"SELECT rid FROM ix_{q.kind} WHERE type = {sql.p(type_)} "
                f"AND {_key_range(sql, q.prefix)}")
    if isinstance(q, Contains):
        return (f"SELECT rid FROM ix_{q.kind} WHERE type = {sql.p(type_)} "
                f"AND {_key_range(sql, q.prefix)} "
                f"AND instr(substr(key, {len(q.prefix) + 1}), {sql.p(q.text)}) > 0")
    if isinstance(q, Element):
        return _element_set(sql, q, type_)
    if isinstance(q, Updated):
        return (f"SELECT rid FROM resources WHERE type = {sql.p(type_)} AND json IS NOT NULL "
                f"AND {_cond(sql, q.cond, '')}")
    if isinstance(q, Ids):
        return f"SELECT rid FROM resources WHERE type = {sql.p(type_)} AND id IN ({sql.ps(q.ids)})"
    if isinstance(q, Chain):
        t = sql.alias()
        inner = select_ids(sql, q.target, q.inner, alias=t,
                           column=f"{sql.p(key(q.param, q.target + '/'))} || {t}.id")
        return (f"SELECT f.rid FROM ({inner}) AS i CROSS JOIN ix_rf f "
                f"ON f.type = {sql.p(type_)} AND f.key = i.k")
    if isinstance(q, Has):
        prefix = key(q.param, f"{type_}/")
        inner = select_ids(sql, q.source, q.inner, alias=sql.alias(), column=None)
        return (f"SELECT r2.rid FROM resources r2 WHERE r2.type = {sql.p(type_)} AND r2.id IN ("
                f"SELECT substr(f.key, {len(prefix) + 1}) FROM ({inner}) AS i "
                f"CROSS JOIN ix_rf f ON f.rid = i.rid WHERE {_key_range(sql, prefix, 'f.key')})")
    if isinstance(q, KeysInSet):
        return _codes_set(sql, q, type_)
    if isinstance(q, Or):
        return " UNION ".join(_set(sql, part, type_) for part in q.parts)
    if isinstance(q, And):
        return select_ids(sql, type_, q, alias=sql.alias(), column=None)
    raise TypeError(q)


# -- token codes from the concept store (storage/sqlite/concepts.py) --------------------

def _codes_prefix(q: KeysInSet) -> str:
    """What the index keys start with before the part the concept store holds."""
    if isinstance(q.source, StoredSet):
        return key(q.param, "")  # then system|code
    if isinstance(q.source, StoredHierarchy):
        return key(q.param, q.source.system, "")  # then the code
    raise ValueError("resolve value sets and hierarchies before compiling (service/search/codes.py)")


def _codes_set(sql: Sql, q: KeysInSet, type_: str) -> str:
    """Rows with a token key in a stored code set or hierarchy: an index join, whatever the
    size of the set (each member is one lookup in the key index; CROSS JOIN keeps that order
    whatever the planner's statistics say)."""
    prefix, src = sql.p(_codes_prefix(q)), q.source
    if isinstance(src, StoredSet):
        return (f"SELECT t.rid FROM code_set_members m CROSS JOIN ix_{q.kind} t ON t.type = "
                f"{sql.p(type_)} AND t.key = {prefix} || m.sc WHERE m.setkey = {sql.p(src.key)}")
    assert isinstance(src, StoredHierarchy)
    gens = sql.ps(src.gens)
    if src.below:
        return (f"SELECT t.rid FROM concept_closure c CROSS JOIN ix_{q.kind} t ON t.type = "
                f"{sql.p(type_)} AND t.key = {prefix} || c.code "
                f"WHERE c.gen IN ({gens}) AND c.ancestor = {sql.p(src.code)}")
    return (f"SELECT t.rid FROM concept_closure c CROSS JOIN ix_{q.kind} t ON t.type = "
            f"{sql.p(type_)} AND t.key = {prefix} || c.ancestor "
            f"WHERE c.gen IN ({gens}) AND c.code = {sql.p(src.code)}")


def _codes_probe(sql: Sql, q: KeysInSet, r: str) -> str:
    """Whether row ``r`` has such a key: its keys of the parameter, each looked up."""
    prefix = _codes_prefix(q)
    rest = f"substr(t.key, {len(prefix) + 1})"
    src = q.source
    if isinstance(src, StoredSet):
        member = (f"EXISTS (SELECT 1 FROM code_set_members m WHERE m.setkey = {sql.p(src.key)} "
                  f"AND m.sc = {rest})")
    else:
        assert isinstance(src, StoredHierarchy)
        pair = (f"c.ancestor = {sql.p(src.code)} AND c.code = {rest}" if src.below
                else f"c.code = {sql.p(src.code)} AND c.ancestor = {rest}")
        member = (f"EXISTS (SELECT 1 FROM concept_closure c WHERE c.gen IN ({sql.ps(src.gens)}) "
                  f"AND {pair})")
    found = (f"EXISTS (SELECT 1 FROM ix_{q.kind} t WHERE t.rid = {r}.rid "
             f"AND {_key_range(sql, prefix, 't.key')} AND {member})")
    return f"NOT {found}" if q.negate else found


def _element_set(sql: Sql, q: Element, type_: str) -> str:
    """Rows of one range kind meeting a condition. Date ranges that must overlap [a, b]
    (``hi >= a`` and ``lo <= b``) are read per tier of span as ``lo`` within
    [a - span, b], so a one-week search reads about a week of rows."""
    base = (f"SELECT rid FROM ix_{q.kind} WHERE type = {sql.p(type_)} AND p = {sql.p(q.param)} "
            f"AND {_cond(sql, q.cond, '')}")
    if q.kind != "dt":
        return base
    found = bounds(q.cond)
    low = found.get("hi", (None, None))[0]
    high = found.get("lo", (None, None))[1]
    if high is not None and low is not None:
        low_ms, high_ms = sql_value(low), sql_value(high)
        parts = [f"{base} AND tier = {i} AND lo >= {sql.p(low_ms - span)} AND lo <= {sql.p(high_ms)}"
                 for i, span in enumerate(TIER_SPANS)]
        parts.append(f"{base} AND tier = {len(TIER_SPANS)} AND lo <= {sql.p(high_ms)}")
        return " UNION ALL ".join(parts)
    if high is not None:
        tiers = ", ".join(str(i) for i in range(len(TIER_SPANS) + 1))
        return f"{base} AND tier IN ({tiers}) AND lo <= {sql.p(high)}"
    if low is not None:
        return f"{base} AND hi >= {sql.p(low)}"
    return base


# -- any condition as a test of one candidate row (probes) ------------------------------

def probe(sql: Sql, q: Query, r: str, type_: str) -> str:
    if isinstance(q, And):
        return "(" + " AND ".join(probe(sql, p, r, type_) for p in q.parts) + ")" if q.parts \
            else "1"
    if isinstance(q, Or):
        return "(" + " OR ".join(probe(sql, p, r, type_) for p in q.parts) + ")" if q.parts \
            else "0"
    if isinstance(q, Keys):
        return (f"EXISTS (SELECT 1 FROM ix_{q.kind} WHERE rid = {r}.rid "
                f"AND key IN ({sql.ps(q.keys)}))")
    if isinstance(q, NoKeys):
        return (f"NOT EXISTS (SELECT 1 FROM ix_{q.kind} WHERE rid = {r}.rid "
                f"AND key IN ({sql.ps(q.keys)}))")
    if isinstance(q, Prefix):
        return (f"EXISTS (SELECT 1 FROM ix_{q.kind} WHERE rid = {r}.rid "
                f"AND {_key_range(sql, q.prefix)})")
    if isinstance(q, Contains):
        return (f"EXISTS (SELECT 1 FROM ix_{q.kind} WHERE rid = {r}.rid "
                f"AND {_key_range(sql, q.prefix)} "
                f"AND instr(substr(key, {len(q.prefix) + 1}), {sql.p(q.text)}) > 0)")
    if isinstance(q, Element):
        return (f"EXISTS (SELECT 1 FROM ix_{q.kind} WHERE rid = {r}.rid "
                f"AND p = {sql.p(q.param)} AND {_cond(sql, q.cond, '')})")
    if isinstance(q, Ids):
        return f"{r}.id {'NOT IN' if q.negate else 'IN'} ({sql.ps(q.ids)})"
    if isinstance(q, Updated):
        return _cond(sql, q.cond, f"{r}.")
    if isinstance(q, Chain):
        t = sql.alias()
        prefix = key(q.param, q.target + "/")
        inner = conditions(sql, q.target, q.inner, t, driven=False)
        return (f"EXISTS (SELECT 1 FROM ix_rf f WHERE f.rid = {r}.rid "
                f"AND {_key_range(sql, prefix, 'f.key')} AND EXISTS (SELECT 1 FROM resources {t} "
                f"WHERE {t}.type = {sql.p(q.target)} AND {t}.id = substr(f.key, {len(prefix) + 1}) "
                f"AND {inner}))")
    if isinstance(q, KeysInSet):
        return _codes_probe(sql, q, r)
    if isinstance(q, Has):
        t = sql.alias()
        inner = conditions(sql, q.source, q.inner, t, driven=False)
        return (f"EXISTS (SELECT 1 FROM ix_rf f JOIN resources {t} ON {t}.rid = f.rid "
                f"WHERE f.type = {sql.p(q.source)} "
                f"AND f.key = {sql.p(key(q.param, q.type_ + '/'))} || {r}.id AND {inner})")
    raise TypeError(q)


# -- whole queries ----------------------------------------------------------------------

def _driver(q: Query) -> tuple[Query | None, list[Query]]:
    """The conjunct to read from an index, and the conjuncts to probe."""
    parts: list[Query] = list(q.parts) if isinstance(q, And) else [q]
    rank = [(_rank(p), i) for i, p in enumerate(parts) if _is_set(p)]
    if not rank:
        return None, parts
    _, best = min(rank)
    return parts[best], parts[:best] + parts[best + 1:]


def _rank(q: Query) -> int:
    """Which positive conditions drive best: exact keys and ids first, joins last."""
    if isinstance(q, Ids | Keys):
        return 0
    if isinstance(q, Prefix | Element | Or):
        return 1
    if isinstance(q, Updated):
        return 2
    return 3


def conditions(sql: Sql, type_: str, q: Query, r: str, *, driven: bool = True) -> str:
    """The WHERE conditions of a query over ``type_`` rows aliased ``r``. Not ``driven``:
    the row is already chosen (a probe), so every condition is a probe."""
    driver, probes = _driver(q) if driven else (None, [q])
    if driver is None:
        conds = [f"{r}.type = {sql.p(type_)}", f"{r}.json IS NOT NULL"]
    else:
        conds = [f"+{r}.type = {sql.p(type_)}", f"{r}.json IS NOT NULL",
                 f"{r}.rid IN ({_set(sql, driver, type_)})"]
    conds += [probe(sql, p, r, type_) for p in probes
              if not (isinstance(p, And) and not p.parts)]
    return " AND ".join(conds)


def select_ids(sql: Sql, type_: str, q: Query, *, alias: str, column: str | None) -> str:
    """SELECT of the matching rows' ``rid`` (``column`` None) or of ``column AS k``."""
    what = f"{alias}.rid" if column is None else f"{column} AS k"
    return f"SELECT {what} FROM resources {alias} WHERE {conditions(sql, type_, q, alias)}"


def has_driver(q: Query) -> bool:
    return _driver(q)[0] is not None


def sorted_by_index(sql: Sql, type_: str, q: Query, param: str, *, descending: bool,
                    with_value: bool, limit: int) -> str:
    """Ids of the rows matching ``q`` in the order of one parameter's sort value, read from
    the ``ix_so`` index in order (``with_value``), or the rows without a value, by id."""
    direction = "DESC" if descending else "ASC"
    r = sql.alias()
    where = conditions(sql, type_, q, r, driven=False)
    if with_value:
        # Only current resources have index rows: with no condition, no row is read.
        joined = "" if q == EVERYTHING else (f" CROSS JOIN resources {r} ON {r}.rid = s.rid "
                                             f"AND {where}")
        return (f"SELECT s.id FROM ix_so s{joined} "
                f"WHERE s.type = {sql.p(type_)} AND s.p = {sql.p(param)} "
                f"ORDER BY s.value {direction}, s.id {direction} LIMIT {sql.p(limit)}")
    return (f"SELECT {r}.id FROM resources {r} WHERE {where} AND NOT EXISTS "
            f"(SELECT 1 FROM ix_so s WHERE s.rid = {r}.rid AND s.p = {sql.p(param)}) "
            f"ORDER BY {r}.id {direction} LIMIT {sql.p(limit)}")


def order_by(sql: Sql, sort: list[SortKey] | tuple[SortKey, ...], r: str = "r") -> str:
    """ORDER BY for the sort keys, ending with the id in the last key's direction."""
    if not sort:
        return ""
    terms = []
    for k in sort:
        direction = "DESC" if k.descending else "ASC"
        if k.name == "_id":
            terms.append(f"{r}.id {direction}")
        elif k.name == "_lastUpdated":
            terms.append(f"{r}.ts {direction}")
        else:
            terms.append(f"(SELECT s.value FROM ix_so s WHERE s.rid = {r}.rid "
                         f"AND s.p = {sql.p(k.name)}) {direction}")
    if not any(k.name == "_id" for k in sort):
        terms.append(f"{r}.id {'DESC' if sort[-1].descending else 'ASC'}")
    return " ORDER BY " + ", ".join(terms)
