"""Search values of a resource, extracted at write time and stored beside it as ``ix``.

Layout of ``ix`` (every lookup on the token, reference, string and uri kinds
is an equality or prefix match on a scalar string, so one multikey index per
kind serves every parameter of that kind):

* ``tk``: token keys ``param|system|code``, ``param|*|code``, ``param|system|``
* ``tt``: token text (CodeableConcept.text, Coding.display) folded, ``param|text``
* ``ot``: identifier type and value for ``:of-type``, ``param|typesystem|typecode|value``
* ``st``: strings folded for case and accents, ``param|text``; ``sx``: exact, ``param|text``
* ``rf``: references ``param|Type/id`` (or the absolute URL); ``ri``: their identifiers as tokens
* ``ur``: uris ``param|uri``
* ``dt``: date ranges ``{p, lo, hi}`` (instants, ``hi`` exclusive)
* ``nm``: numbers ``{p, v}``; ``qt``: quantities ``{p, v, s, c, u}``
* ``cp``: composites of token-like components, ``param|key1$key2``;
  ``cr``: a token component with a quantity or date one, ``{p, k, v?, lo?, hi?, s?, c?}``
* ``has``: codes of the parameters with a value (``:missing``)
* ``so``: one sortable value per parameter (``_sort``)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from itertools import product
from typing import Any

from fhir_server.core.errors import FhirError
from fhir_server.observability import metrics
from fhir_server.search.dates import date_range
from fhir_server.search.normalize import (
    HIGHEST,
    LOWEST,
    bson_number,
    fold,
    key,
    token_keys,
)
from fhir_server.search.registry import SearchParam, extraction_plan, split_union

REFERENCE = re.compile(r"^(?:(?P<base>.*)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
                       r"(?:/_history/[^/]+)?$")
NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
MAX_STRING = 200
# Searched on the server's own fields (_id, the version's instant), not on extracted values.
SERVER_VALUES = frozenset({"_id", "_lastUpdated"})  # folded strings are indexed up to this length
log = logging.getLogger(__name__)


def normalize_reference(ref: str, base_url: str) -> str | None:
    """``Type/id`` for a literal reference to this server, the URL for others, None for '#x'."""
    if not ref or ref.startswith("#"):
        return None
    if base_url and ref.startswith(base_url + "/"):
        ref = ref[len(base_url) + 1:]
    match = REFERENCE.match(ref)
    if match and not match.group("base"):
        return f"{match.group('type')}/{match.group('id')}"
    return ref.split("/_history/")[0] if match else ref


def reference_type(ref: str) -> str | None:
    match = REFERENCE.match(ref)
    return match.group("type") if match else None


class Collector:
    """Accumulates the ``ix`` document of one resource."""

    def __init__(self, base_url: str, type_: str = "") -> None:
        self.base_url = base_url
        self.type_ = type_
        self.at: tuple[str, str] = ("", "")  # the parameter and path being extracted
        self.lists: dict[str, list[Any]] = {}
        self.sort: dict[str, Any] = {}
        self.present: set[str] = set()

    def failed(self, error: BaseException) -> None:
        """Values of the current parameter could not be extracted: the resource is stored
        without them. Logged with the type, parameter and path, and the error's type only
        (its message may quote the value), and counted."""
        param, path = self.at
        log.warning("search values not extracted type=%s param=%s path=%s error=%s",
                    self.type_, param, path, type(error).__name__)
        metrics.extraction_failed(resource_type=self.type_, parameter=param)

    def add(self, kind: str, param: str, value: Any, sort: Any = None) -> None:
        self.lists.setdefault(kind, []).append(value)
        self.present.add(param)
        if sort is not None and param not in self.sort:
            self.sort[param] = sort

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind, values in self.lists.items():
            if values and isinstance(values[0], str):
                out[kind] = sorted(set(values))
            else:
                seen: list[Any] = []
                for v in values:
                    if v not in seen:
                        seen.append(v)
                out[kind] = seen
        if self.present:
            out["has"] = sorted(self.present)
        if self.sort:
            out["so"] = self.sort
        return out


# -- per parameter type -----------------------------------------------------------------

def _tokens(value: Any) -> Iterator[tuple[str | None, str | None, str | None]]:
    """(system, code, text) triples of a token-valued element."""
    if isinstance(value, bool):
        yield None, "true" if value else "false", None
    elif isinstance(value, str | int | Decimal):
        yield None, str(value), None
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
            for coding in value.get("coding") or []:
                yield coding.get("system"), coding.get("code"), coding.get("display")
            if value.get("text"):
                yield None, None, value["text"]
        elif "value" in value and ("system" in value or "use" in value or "type" in value
                                   or "period" in value or "assigner" in value):
            # Identifier (system|value) or ContactPoint (system is phone, email, ...)
            yield value.get("system"), str(value.get("value")), None
        elif "code" in value or "system" in value:
            yield value.get("system"), value.get("code"), value.get("display")
        elif "value" in value:
            yield None, str(value["value"]), None


def _index_token(c: Collector, param: str, values: Iterable[Any]) -> None:
    # Each distinct (system, code, text) once, in the order met: an element repeated a
    # hundred times (an AuditEvent's entity types and roles) would make the same keys a
    # hundred times over.
    triples: dict[tuple[Any, Any, Any], None] = {}
    typed: dict[tuple[str, str, str], None] = {}
    for value in values:
        for triple in _tokens(value):
            triples[triple] = None
        if isinstance(value, dict) and "value" in value and isinstance(value.get("type"), dict):
            for coding in value["type"].get("coding") or []:
                typed[(coding.get("system") or "", coding.get("code") or "",
                       str(value["value"]))] = None
    for system, code, text in triples:
        for k in token_keys(param, system, code):
            c.add("tk", param, k, sort=code)
        if text:
            c.add("tt", param, key(param, fold(text)[:MAX_STRING]))
    for system, code, value in typed:
        c.add("ot", param, key(param, system, code, value))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        parts = NAME_PARTS if ("family" in value or "given" in value) else ADDRESS_PARTS
        for part in parts:
            item = value.get(part)
            for text in item if isinstance(item, list) else [item]:
                if isinstance(text, str):
                    yield text


def _index_string(c: Collector, param: str, values: Iterable[Any]) -> None:
    for value in values:
        for text in _strings(value):
            folded = fold(text)[:MAX_STRING]
            c.add("st", param, key(param, folded), sort=folded)
            c.add("sx", param, key(param, text[:MAX_STRING]))


def _index_reference(c: Collector, param: str, values: Iterable[Any],
                     keep: tuple[str, ...]) -> None:
    for value in values:
        refs: list[str] = []
        if isinstance(value, str):  # canonical or uri used as a reference
            refs.append(value.split("|")[0])
        elif isinstance(value, dict):
            if isinstance(value.get("reference"), str):
                refs.append(value["reference"])
            ident = value.get("identifier")
            if isinstance(ident, dict):
                for k in token_keys(param, ident.get("system"), ident.get("value")):
                    c.add("ri", param, k)
        for ref in refs:
            norm = normalize_reference(ref, c.base_url)
            if norm is None:
                continue
            if keep and reference_type(norm) not in keep:
                continue
            c.add("rf", param, key(param, norm), sort=norm)


def _date_ranges(value: Any, c: Collector) -> Iterator[tuple[Any, Any]]:
    """The [lo, hi) ranges of a date-like element; a value that does not parse ends the
    element's ranges and is reported (``Collector.failed``)."""
    try:
        if isinstance(value, str):
            yield date_range(value)
        elif isinstance(value, dict):
            if "start" in value or "end" in value:  # Period: an open end is ongoing
                lo = date_range(value["start"])[0] if value.get("start") else LOWEST
                hi = date_range(value["end"])[1] if value.get("end") else HIGHEST
                yield lo, max(lo, hi)  # a start after the end (invalid) is not a negative range
            # Timing: only its outer limits matter (events and bounds together).
            spans = [date_range(e) for e in value.get("event") or []]
            bounds = (value.get("repeat") or {}).get("boundsPeriod")
            if bounds:
                spans += list(_date_ranges(bounds, c))
            if spans:
                yield min(s[0] for s in spans), max(s[1] for s in spans)
    except FhirError as error:
        c.failed(error)
        return


def _index_date(c: Collector, param: str, values: Iterable[Any]) -> None:
    for value in values:
        for lo, hi in _date_ranges(value, c):
            c.add("dt", param, {"p": param, "lo": lo, "hi": hi}, sort=lo)


def _index_number(c: Collector, param: str, values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            c.add("nm", param, {"p": param, "v": bson_number(value)}, sort=bson_number(value))
        elif isinstance(value, dict) and "value" in value:
            c.add("nm", param, {"p": param, "v": bson_number(value["value"])})


def _quantities(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if "value" in value and isinstance(value["value"], int | Decimal):
            yield {"v": bson_number(value["value"]), "s": value.get("system"),
                   "c": value.get("code"), "u": value.get("unit")}
        for bound in ("low", "high"):  # Range
            if isinstance(value.get(bound), dict):
                yield from _quantities(value[bound])


def _index_quantity(c: Collector, param: str, values: Iterable[Any]) -> None:
    for value in values:
        for q in _quantities(value):
            c.add("qt", param, {"p": param, **{k: v for k, v in q.items() if v is not None}},
                  sort=q["v"])


def _index_uri(c: Collector, param: str, values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, str):
            c.add("ur", param, key(param, value), sort=value)


def _component_keys(component_type: str, code: str, values: list[Any]) -> list[str]:
    keys: list[str] = []
    for value in values:
        if component_type == "token":
            for system, tcode, _ in _tokens(value):
                keys += [k.split("|", 1)[1] for k in token_keys(code, system, tcode)]
        elif component_type in {"string", "uri"}:
            keys += [fold(s) for s in _strings(value)]
        elif component_type == "reference" and isinstance(value, dict):
            norm = normalize_reference(str(value.get("reference", "")), "")
            if norm:
                keys.append(norm)
    return keys


_AS_TYPE = re.compile(r"^([a-z][A-Za-z]*)\.as\(([A-Za-z]+)\)$")


def component_values(expression: str, element: Any) -> list[Any]:
    """A composite component's values, relative to one element (``code``, ``value.as(Quantity)``).

    fhirpathpy cannot resolve choice types on a bare element, so the forms the R4
    definitions use are read directly; others (``%resource...``) give nothing.
    """
    if not isinstance(element, dict):
        return []
    found: list[Any] = []
    for branch in split_union(expression):
        match = _AS_TYPE.match(branch)
        if match:
            name, kind = match.groups()
            value = element.get(name + kind[0].upper() + kind[1:])
        elif branch.isidentifier():
            value = element.get(branch)
            if value is None:  # a choice element: value -> valueX
                value = next((v for k, v in element.items() if k.startswith(branch)
                              and k[len(branch):][:1].isupper()), None)
        else:
            continue
        if value is not None:
            found.extend(value if isinstance(value, list) else [value])
    return found


def _index_composite(c: Collector, param: SearchParam, values: Iterable[Any]) -> None:
    for element in values:
        per_component = [(comp.type, component_values(comp.expression, element))
                         for comp in param.components]
        if len(per_component) != 2 or not all(found for _, found in per_component):
            continue
        (t1, v1), (t2, v2) = per_component
        keys1 = _component_keys(t1, param.components[0].code, v1)
        if t2 in {"token", "string", "uri", "reference"}:
            keys2 = _component_keys(t2, param.components[1].code, v2)
            for k1, k2 in product(keys1, keys2):
                c.add("cp", param.code, key(param.code, f"{k1}${k2}"))
        elif t2 == "quantity":
            for k1, q in product(keys1, [q for v in v2 for q in _quantities(v)]):
                c.add("cr", param.code, {"p": param.code, "k": k1,
                                         **{k: v for k, v in q.items() if v is not None}})
        elif t2 == "date":
            for k1, (lo, hi) in product(keys1, [r for v in v2 for r in _date_ranges(v, c)]):
                c.add("cr", param.code, {"p": param.code, "k": k1, "lo": lo, "hi": hi})


def index_resource(resource: Mapping[str, Any], *, base_url: str = "",
                   only: frozenset[str] | None = None) -> dict[str, Any]:
    """The ``ix`` document of a resource: every search parameter's normalised values, or
    (``only``) those of the parameters named, for a judge that reads no others."""
    rtype = str(resource.get("resourceType", ""))
    c = Collector(base_url, rtype)
    for param, evaluators in extraction_plan(rtype):
        code = param.code
        if code in SERVER_VALUES or (only is not None and code not in only):
            continue
        for evaluator in evaluators:
            roots = evaluator.roots
            if roots is not None and not any(r in resource for r in roots):
                continue  # the path starts from an element the resource does not have
            c.at = (code, evaluator.expression)
            try:
                values = evaluator.fn(resource)
            except Exception as error:  # the other parameters are still extracted
                c.failed(error)
                continue
            if not values:
                continue
            if param.type == "reference":
                _index_reference(c, code, values, evaluator.keep)
            elif param.type == "composite":
                _index_composite(c, param, values)
            else:
                _INDEXERS[param.type](c, code, values)
    return c.document()


_INDEXERS: dict[str, Callable[[Collector, str, Iterable[Any]], None]] = {
    "token": _index_token, "string": _index_string, "date": _index_date,
    "number": _index_number, "quantity": _index_quantity, "uri": _index_uri}


def merge_index(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ix`` document of a resource from those of two parts that share no top-level
    element, for search parameters whose values each come from one element (a union of
    paths at most): what ``index_resource`` of the whole gives."""
    out: dict[str, Any] = {}
    for kind in first.keys() | second.keys():
        a, b = first.get(kind), second.get(kind)
        if a is None or b is None:
            out[kind] = a if b is None else b
        elif kind == "so":
            out[kind] = {**b, **a}
        elif kind == "has" or (a and isinstance(a[0], str)) or (b and isinstance(b[0], str)):
            out[kind] = sorted(set(a) | set(b))
        else:
            out[kind] = [*a, *(v for v in b if v not in a)]
    return out
