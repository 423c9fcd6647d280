"""The storage boundary holds: storage imports nothing above it (the core, observability
for its instrumentation, and the query model are below it), and no
module outside ``fhir_server/storage`` knows a stored document's shape (``{_id, ix}``).
Read from the source (AST), so a new module is checked without a list to keep."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent.parent / "fhir_server"
# What storage may import from fhir_server: the rooms below it (ARCHITECTURE.md's map).
STORAGE_MAY_IMPORT = ("fhir_server.core", "fhir_server.observability", "fhir_server.search",
                      "fhir_server.storage")
SEARCH_SERVICE = "fhir_server.service.search"
DOCUMENT_FIELDS = {"ix"}  # the stored search values' field of a current document


def modules(under: Path) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(under.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def imported(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_storage_imports_only_the_core_and_the_query_model() -> None:
    wrong = [f"{path.relative_to(PACKAGE)}: {name}" for path, tree in modules(PACKAGE / "storage")
             for name in imported(tree)
             if name.startswith("fhir_server") and not name.startswith(STORAGE_MAY_IMPORT)]
    assert not wrong, wrong


def test_the_query_model_does_not_import_the_search_service() -> None:
    wrong = [f"{path.relative_to(PACKAGE)}: {name}" for path, tree in modules(PACKAGE / "search")
             for name in imported(tree)
             if name.startswith((SEARCH_SERVICE, "fhir_server.storage"))]
    assert not wrong, wrong


def _names_the_shape(node: ast.AST) -> bool:
    """A dict display with an ``ix`` key, a subscript ``["ix"]`` or a ``.get("ix")``."""
    if isinstance(node, ast.Dict):
        return any(isinstance(k, ast.Constant) and k.value in DOCUMENT_FIELDS for k in node.keys)
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value in DOCUMENT_FIELDS
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        first = node.args[0] if node.args else None
        return (node.func.attr == "get" and isinstance(first, ast.Constant)
                and first.value in DOCUMENT_FIELDS)
    return False


def _shape_uses(tree: ast.Module) -> Iterator[int]:
    """The lines that build or read a document's ``ix``."""
    for node in ast.walk(tree):
        if _names_the_shape(node):
            yield getattr(node, "lineno", 0)


def test_no_module_above_storage_knows_a_documents_shape() -> None:
    found = [f"{path.relative_to(PACKAGE)}:{line}" for path, tree in modules(PACKAGE)
             if "storage" not in path.relative_to(PACKAGE).parts
             for line in _shape_uses(tree)]
    assert not found, found
    inside = [line for path, tree in modules(PACKAGE / "storage") for line in _shape_uses(tree)]
    assert inside  # the check sees the shape where it lives
