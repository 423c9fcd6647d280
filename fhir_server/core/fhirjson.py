"""FHIR JSON in and out, keeping every value exactly as the client wrote it.

Decimals are parsed as ``Decimal`` and written back with their original
digits (``1.50`` stays ``1.50``); dates and strings are never reformatted.
The stored form of a resource is its JSON text, produced once at write time.

Content from outside (request bodies, a payer's answers) is parsed with a
nesting limit (``FHIR_MAX_JSON_DEPTH``): objects and arrays nested deeper than
that answer 400 before anything recursive (model validation, search-value
extraction, serialisation) sees them; and with a string limit (``FHIR_MAX_STRING_BYTES``,
UTF-8 bytes): a longer string answers 400 naming its element, except base64Binary
elements (``data`` of Binary, Attachment and Signature, ``value[x]`` as
``...Base64Binary``), which only the body limit bounds.
"""

from __future__ import annotations

import json
import re
import sys
from decimal import Decimal
from typing import Any

import orjson

from fhir_server.core.errors import Invalid

JsonObject = dict[str, Any]
ELEMENT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# A \uD800-\uDFFF escape: JSON text may write a UTF-16 surrogate so, and only so (UTF-8 text
# cannot hold one). A pair decodes to one character; a lone one would stay in the string.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _NotJsonNumber(ValueError):
    """NaN, Infinity or -Infinity: Python's JSON reader takes them, JSON has no such numbers."""


def _reject_constant(name: str) -> Any:
    raise _NotJsonNumber(name)


class _DuplicateKey(ValueError):
    """One object names a key twice: JSON readers disagree on which value wins (RFC 8259
    says names SHOULD be unique), so FHIR JSON refuses it rather than guess."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _parse_float(text: str) -> Decimal:
    return Decimal(text)


def parse_json(body: bytes, *, max_depth: int, max_string: int | None = None,
               what: str = "request body") -> Any:
    """Parse JSON, keeping decimals exact; malformed or too deeply nested JSON, or a string
    longer than ``max_string`` UTF-8 bytes (None: no limit), is a 400."""
    if not body.strip():
        raise Invalid(f"The {what} is empty", code="structure")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"The {what} is not UTF-8 (byte {exc.start})", code="structure") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = json.loads(text, parse_float=_parse_float, parse_constant=_reject_constant,
                           object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"The {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="structure",
        ) from None
    except RecursionError:  # deeper than the interpreter's stack: far beyond any limit
        raise too_deep(None, max_depth, what) from None
    except _NotJsonNumber as exc:
        raise Invalid(f"The {what} is not valid JSON: {exc} is not a JSON number",
                      code="structure") from None
    except _DuplicateKey as exc:
        key = str(exc)
        named = f'"{key}"' if ELEMENT_NAME.match(key) else "a key"  # never echo free text
        raise Invalid(f"The {what} is not valid FHIR JSON: {named} appears twice in one object",
                      code="structure") from None
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise Invalid(f"The {what} is not valid JSON: a number has more digits than this "
                      "server reads", code="structure") from None
    check_limits(value, max_depth=max_depth, max_string=max_string, what=what)
    if SURROGATE_ESCAPE.search(text):
        check_unicode(value, what)
    return value


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def check_unicode(value: Any, what: str) -> None:
    """Invalid when a string or key holds a lone surrogate (an unpaired \\uD800-\\uDFFF
    escape): not a Unicode character, so no FHIR string, and no UTF-8 to store or answer.
    Called after check_limits, so the nesting is bounded."""
    path = _path_to(value, lambda key, child: _has_surrogate(str(key)) or (
        isinstance(child, str) and _has_surrogate(child)))
    if path is not None:
        where = _fhirpath(value, path)
        raise Invalid(f"A string in the {what} holds a lone UTF-16 surrogate (an unpaired "
                      "\\uD800-\\uDFFF escape), which is not a Unicode character",
                      expression=[where] if where else [], code="structure")


def _path_to(node: Any, found: Any) -> list[str | int] | None:
    """Keys and indexes down to the first (key, child) for which ``found`` is true."""
    if not isinstance(node, dict | list):
        return None
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in items:
        if found(key, child):
            return [key]
        below = _path_to(child, found)
        if below is not None:
            return [key, *below]
    return None


def check_limits(value: Any, *, max_depth: int, max_string: int | None = None,
                what: str = "resource") -> None:
    """Invalid when objects and arrays nest more than ``max_depth`` levels (the top is 1),
    or a string other than base64Binary is longer than ``max_string`` UTF-8 bytes.

    Iterative, so that any depth can be measured without recursion; one walk for both.
    """
    if not isinstance(value, dict | list):
        return
    longest = sys.maxsize if max_string is None else max_string
    # A string of at most longest/4 characters is at most `longest` bytes in UTF-8: only
    # longer ones are measured, so the walk costs a len() per string.
    quick = longest // 4
    stack: list[tuple[JsonObject | list[Any], int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(child, str):
                if len(child) > quick and _too_long(key, child, longest):
                    raise too_long(value, max_depth, longest, what)
            elif isinstance(child, dict | list):
                if depth >= max_depth:
                    raise too_deep(value, max_depth, what)
                stack.append((child, depth + 1))


def is_base64_element(name: str | int) -> bool:
    """base64Binary elements (Binary.data, Attachment.data, Signature.data, every
    ``...Base64Binary`` choice): content that legitimately grows beyond a string's 1 MB."""
    return isinstance(name, str) and (name == "data" or name.endswith("Base64Binary"))


def _too_long(key: str | int, text: str, longest: int) -> bool:
    if is_base64_element(key):
        return False
    # surrogatepass: a lone surrogate (valid JSON, not Unicode) is counted here and refused
    # by the model's validation, which names its element.
    return len(text) > longest or (not text.isascii()
                                   and len(text.encode("utf-8", "surrogatepass")) > longest)


def too_long(value: Any, max_depth: int, longest: int, what: str) -> Invalid:
    """The 400 for a string longer than ``longest`` bytes, naming its element."""
    path = _path_to_long(value, 1, max_depth, longest)
    where = _fhirpath(value, path) if path is not None else None
    return Invalid(f"A string in the {what} is longer than {longest} bytes (UTF-8), this "
                   "server's limit for one element (FHIR_MAX_STRING_BYTES)",
                   expression=[where] if where else [], code="too-long")


def _path_to_long(node: Any, depth: int, max_depth: int,
                  longest: int) -> list[str | int] | None:
    """Keys and indexes down to the first string over the limit (recursion bounded by depth)."""
    if depth > max_depth:
        return None
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in items:
        if isinstance(child, str) and _too_long(key, child, longest):
            return [key]
        if isinstance(child, dict | list):
            below = _path_to_long(child, depth + 1, max_depth, longest)
            if below is not None:
                return [key, *below]
    return None


def too_deep(value: Any, max_depth: int, what: str) -> Invalid:
    """The 400 for content nested deeper than ``max_depth``, naming where when it can."""
    path = None if value is None else _path_below(value, 1, max_depth)
    where = _fhirpath(value, path) if path is not None else None
    return Invalid(f"The {what} is nested too deeply: more than {max_depth} levels of objects "
                   f"and arrays (this server accepts at most {max_depth})",
                   expression=[where] if where else [], code="structure")


def _path_below(node: Any, depth: int, max_depth: int) -> list[str | int] | None:
    """Keys and indexes down to the first container below ``max_depth`` (recursion bounded by it)."""
    if depth > max_depth:
        return []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in items:
        if isinstance(child, dict | list):
            below = _path_below(child, depth + 1, max_depth)
            if below is not None:
                return [key, *below]
    return None


def _fhirpath(root: Any, path: list[str | int]) -> str | None:
    """``Patient.extension[0].extension[0]``; None when the top is not a resource."""
    rtype = root.get("resourceType") if isinstance(root, dict) else None
    if not isinstance(rtype, str) or not rtype.isalnum():
        return None
    out = rtype
    for part in path:
        if isinstance(part, str) and not ELEMENT_NAME.match(part):
            break  # not an element name: the path stops before it (never quote content)
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_resource(body: bytes, *, max_depth: int, max_string: int | None = None) -> JsonObject:
    """Parse a request body that must be one JSON object."""
    value = parse_json(body, max_depth=max_depth, max_string=max_string)
    if not isinstance(value, dict):
        raise Invalid(
            f"The request body must be a JSON object (a FHIR resource), not a {type(value).__name__}",
            code="structure",
        )
    return value


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(value, default=_default, option=option)


def loads_stored(text: str | bytes) -> Any:
    """Parse JSON the server itself wrote (trusted, exact decimals)."""
    return json.loads(text, parse_float=_parse_float)
