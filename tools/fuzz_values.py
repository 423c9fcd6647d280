"""Odd values and random mutations of FHIR resources, for the fuzzer (bench/fuzz.py and
tests/api/test_fuzz.py). Everything is drawn from the ``random.Random`` passed in, so a
seed replays the same values."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

ODD_STRINGS = [
    "", " ", "\u0000", "\ud800", "\udfff", "a\ud83dz", "\ufeff", "\u202e", "\uffff",
    "\U0001f600" * 3, "e\u0301", "\u00b2", "\u0660\u0661", "%", "%00", "%ff", "../..",
    "Patient/", "#", "urn:uuid:", "urn:oid:", "http://", "https://example.org/fhir/Patient/1",
    "Patient/../../x", "Patient/1/_history/x", "Patient?name=x", "$everything", "\n\r\t",
    "<script>", "' OR 1=1 --", '{"$gt": ""}', "$where", "a.b", "a\\b", "null", "true", "-0",
    "1e999", "NaN", "9999-99-99", "2020-02-30", "0000-00-00T25:61:61Z", "T", "-", "::",
]
ODD_NUMBERS: list[Any] = [
    0, -1, -0.0, 1.5, 10 ** 30, -(10 ** 30), 10 ** 400, 2 ** 63, 2 ** 64 + 1, -(2 ** 63) - 1,
    1e308, 5e-324, float("nan"), float("inf"), float("-inf"),
]
ODD_REFERENCES = [
    "Patient/", "#", "#missing", "urn:uuid:", "urn:uuid:not-a-uuid", "Patient//x", "/Patient/1",
    "http://example.org/fhir/Patient/1", "Patient/1/_history/", "Nope/1", "Patient/" + "x" * 70,
    "Patient/\u0000", "?", "Patient?identifier=x", "Patient/1?x", "", " Patient/1",
]


def odd_string(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.1:
        return rng.choice("ab\u00e9\ud800\U0001f600") * rng.choice([1000, 20_000, 70_000])
    if pick < 0.2:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 40)))
    return rng.choice(ODD_STRINGS)


def odd_number(rng: random.Random) -> Any:
    return rng.choice(ODD_NUMBERS)


def odd_value(rng: random.Random, depth: int = 0) -> Any:
    """A value of a random JSON type: string, number, bool, null, object or array."""
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return odd_string(rng)
    if kind == 1:
        return odd_number(rng)
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3:
        return None
    if kind == 4:
        return {rng.choice(["x", "id", "value", "extension", "resourceType", "reference", ""]):
                odd_value(rng, depth + 1)}
    if kind == 5:
        return [odd_value(rng, depth + 1) for _ in range(rng.randrange(0, 3))]
    return rng.choice([[], {}, [[]], [{}], [None]])


def swap_type(value: Any, rng: random.Random) -> Any:
    """The same content in another JSON type (string↔number↔bool↔object↔array)."""
    if isinstance(value, str):
        return rng.choice([len(value), value == "", [value], {"value": value}, None])
    if isinstance(value, bool):
        return rng.choice([str(value).lower(), int(value), [value]])
    if isinstance(value, (int, float)):
        return rng.choice([str(value), value > 0, [value], {"value": value}, odd_number(rng)])
    if isinstance(value, list):
        return rng.choice([value[0] if value else None, {"0": value}, json.dumps(value)[:50], 1])
    if isinstance(value, dict):
        return rng.choice([[value, value], list(value)[:1] or "", 7, True])
    return odd_value(rng)


def _slots(node: Any, out: list[tuple[Any, Any]], depth: int = 0) -> None:
    """Every (container, key or index) in ``node``, the containers themselves included."""
    if depth > 12:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((node, key))
            _slots(value, out, depth + 1)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append((node, index))
            _slots(value, out, depth + 1)


def mutate_slot(container: Any, key: Any, rng: random.Random) -> None:
    """One change at ``container[key]``: delete, duplicate, swap type, or an odd value."""
    value = container[key]
    action = rng.randrange(6)
    if action == 0:
        del container[key]
    elif action == 1 and isinstance(container, list):
        container.insert(key, copy.deepcopy(value))
    elif action == 1:
        container[key] = [copy.deepcopy(value), copy.deepcopy(value)]
    elif action == 2:
        container[key] = swap_type(value, rng)
    elif action == 3:
        container[key] = odd_string(rng) if isinstance(value, str) else odd_value(rng)
    elif action == 4 and isinstance(value, (int, float)) and not isinstance(value, bool):
        container[key] = odd_number(rng)
    elif action == 4 and isinstance(container, dict):
        container[rng.choice([f"_{key}", f"{key}X", "modifierExtension", "x" * 300])] = \
            copy.deepcopy(value)
    else:
        container[key] = odd_value(rng)


def mutate_elements(resource: dict[str, Any], rng: random.Random, changes: int) -> None:
    for _ in range(changes):
        slots: list[tuple[Any, Any]] = []
        _slots(resource, slots)
        slots = [(c, k) for c, k in slots if not (c is resource and k == "resourceType")]
        if not slots:
            return
        container, key = rng.choice(slots)
        if isinstance(container, list) and key >= len(container):
            continue
        if isinstance(container, dict) and key not in container:
            continue
        mutate_slot(container, key, rng)


def bad_references(resource: dict[str, Any], rng: random.Random) -> None:
    slots: list[tuple[Any, Any]] = []
    _slots(resource, slots)
    refs = [(c, k) for c, k in slots if k == "reference"]
    for container, key in refs or [(resource, "subject")]:
        if container is resource:
            resource["subject"] = {"reference": rng.choice(ODD_REFERENCES)}
        else:
            container[key] = rng.choice(ODD_REFERENCES)


def nest_contained(resource: dict[str, Any], rng: random.Random) -> None:
    """contained inside contained, ids clashing or missing, references into them."""
    inner: dict[str, Any] = {"resourceType": "Patient", "id": rng.choice(["c1", "", "#c1", None])}
    for _ in range(rng.randrange(1, 6)):
        inner = {"resourceType": rng.choice(["Patient", "Organization", "Bundle", "Binary"]),
                 "id": rng.choice(["c1", "c2", "c1"]), "contained": [inner]}
    resource["contained"] = [inner, copy.deepcopy(inner)] if rng.random() < 0.5 else [inner]
    add_extension(resource, {"url": "http://x/ref",
                             "valueReference": {"reference": rng.choice(["#c1", "#", "#c9"])}})


def add_extension(resource: dict[str, Any], extension: dict[str, Any]) -> None:
    """One more extension (the list replaced when a mutation made it something else)."""
    if not isinstance(resource.get("extension"), list):
        resource["extension"] = []
    resource["extension"].append(extension)


def odd_extensions(resource: dict[str, Any], rng: random.Random) -> None:
    ext: list[Any] = [{"url": "http://x/e"}, {"url": ""}, {"valueString": "x"},
                      {"url": "http://x/e", "valueString": "a", "valueInteger": 1},
                      {"url": "http://x/e", "extension": [{"url": "n"}]}, "x", None]
    resource[rng.choice(["extension", "modifierExtension"])] = rng.sample(ext, rng.randrange(1, 4))


def mutate_resource(resource: dict[str, Any], rng: random.Random,
                    types: list[str]) -> dict[str, Any]:
    """A mutated deep copy of ``resource``: one to three kinds of damage."""
    out = copy.deepcopy(resource)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(8)
        if kind <= 2:
            mutate_elements(out, rng, rng.randrange(1, 6))
        elif kind == 3:
            out["resourceType"] = rng.choice([*rng.sample(types, 1), "", "patient", "Nope", 5,
                                              None, ["Patient"], "Parameters", "Bundle"])
        elif kind == 4:
            out["id"] = rng.choice(["", "x" * 65, "a b", "../x", 7, None, "\ud800", "-", "."])
        elif kind == 5:
            bad_references(out, rng)
        elif kind == 6:
            nest_contained(out, rng)
        else:
            odd_extensions(out, rng)
    return out


def dumps(value: Any, rng: random.Random | None = None) -> bytes:
    """JSON text; lone surrogates escaped (\\ud800), NaN and Infinity written as Python does.
    Sometimes (with ``rng``) duplicated keys or trailing garbage."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    if rng is not None and rng.random() < 0.03:
        text = rng.choice([text[:-1], text + "x", text.replace("{", '{"id": 1, "id": 2, ', 1),
                           text + text, "\ufeff" + text, text.replace('"', "'", 2)])
    return text.encode("utf-8", "surrogatepass")
