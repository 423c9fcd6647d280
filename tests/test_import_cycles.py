"""No import cycle in fhir_server, between modules or between rooms.

The graph is read from the source (every import, in functions and under TYPE_CHECKING
too: a cycle there is still two modules that need each other). ``from package import x``
counts as importing the package as well: Python runs the package's ``__init__`` first, so
an ``__init__`` that imports its own modules closes a cycle with each module that imports
it that way (``adapters/hl7v2`` did). The rooms' order itself is the import contracts'
(``[tool.importlinter]`` in pyproject.toml, checked by ``make lint``).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fhir_server"


def layers_contract() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract: dict[str, Any] = next(c for c in config["contracts"] if c["type"] == "layers")
    return contract


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.AST, name: str, *, is_package: bool) -> Iterator[str]:
    """The modules (or packages) of fhir_server that a module's code imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package upwards
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


@cache
def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = imported(tree, name, is_package=path.name == "__init__.py")
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_a_package_imported_by_name_is_an_edge() -> None:
    tree = ast.parse("from fhir_server.adapters.hl7v2 import segments\n")
    found = set(imported(tree, "fhir_server.adapters.hl7v2.adt", is_package=False))
    assert found == {"fhir_server.adapters.hl7v2", "fhir_server.adapters.hl7v2.segments"}


def test_no_module_imports_itself_back() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def room_graph() -> dict[str, set[str]]:
    """Which room imports which, a layer whose rooms may import each other (``a : b`` in the
    contract) taken as one node, and the imports the contract ignores (each with its
    reason there) left out."""
    contract = layers_contract()
    node = {room.strip("() "): layer for layer in contract["layers"] for room in layer.split(":")}
    ignored = {tuple(part.strip() for part in rule.split("->"))
               for rule in contract.get("ignore_imports", [])}
    # ``from package import module``, ignored, imports the package too.
    ignored |= {(importer, target.rpartition(".")[0]) for importer, target in ignored}
    rooms: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        here = node.get(room_of(module), room_of(module))
        for target in targets:
            there = node.get(room_of(target), room_of(target))
            if here and there and here != there and (module, target) not in ignored:
                rooms.setdefault(here, set()).add(there)
    return rooms


def test_the_rooms_are_the_contracts() -> None:
    declared = {room.strip("() ") for layer in layers_contract()["layers"]
                for room in layer.split(":")}
    rooms = {room_of(m) for m in import_graph()} - {""}
    assert rooms <= declared, f"rooms the import contracts do not place: {rooms - declared}"


@pytest.mark.parametrize("room", sorted({room_of(m) for m in import_graph()} - {""}))
def test_no_room_imports_itself_back(room: str) -> None:
    found = [c for c in cycles(room_graph()) if any(room in layer.split(" : ") for layer in c)]
    assert found == [], f"{room} is in a cycle of rooms: {found}"
