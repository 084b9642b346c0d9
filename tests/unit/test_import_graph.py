"""The shape of the code, read from its source with `ast` (no import runs): no import cycle within
the app's packages, and no module importing another module's private (`_underscore`) names.

A cycle is counted from the imports that run: module-level ones and those inside functions (a
lazy import that closes a cycle only hides it), not those under `if TYPE_CHECKING:`. `from pkg
import sub` where `sub` is a module is an edge to `pkg.sub`; any other `from pkg import name` is an
edge to `pkg` (its `__init__`). The parent package that Python imports before a submodule is not an
edge: every submodule has one, and it closes a cycle only through an explicit import back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "devstack", "hunter_results")
SINGLE_MODULES = ("function_app",)

# Private names imported across modules that are still allowed: none since issue 19 made one push
# engine. The test fails when one appears. (importer, source module, name)
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()


def modules() -> dict[str, Path]:
    """Every module of the app by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    for name in SINGLE_MODULES:
        found[name] = ROOT / f"{name}.py"
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of `tree` that run: all but those under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def source_module(importer: str, path: Path, node: ast.ImportFrom) -> str:
    """The module a `from … import …` reads from, with relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def graph() -> tuple[dict[str, set[str]], set[tuple[str, str, str]]]:
    """(module → the app modules it imports, {(importer, source, private name)})."""
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    private: set[tuple[str, str, str]] = set()
    for importer, path in known.items():
        for node in runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges[importer].update(alias.name for alias in node.names if alias.name in known)
                continue
            source = source_module(importer, path, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in known:
                    edges[importer].add(f"{source}.{alias.name}")
                elif source in known:
                    edges[importer].add(source)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.add((importer, source, alias.name))
    for importer in edges:
        edges[importer].discard(importer)
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle_within_the_apps_packages() -> None:
    edges, _ = graph()
    found = cycles(edges)
    described = [{member: sorted(set(edges[member]) & set(cycle)) for member in cycle} for cycle in found]
    assert not found, f"import cycles (module → the members it imports): {described}"


def test_no_module_imports_another_modules_private_names() -> None:
    _, private = graph()
    new = sorted(private - KNOWN_PRIVATE_IMPORTS)
    assert not new, f"private names imported across modules (importer, source, name): {new}"
    gone = sorted(KNOWN_PRIVATE_IMPORTS - private)
    assert not gone, f"no longer imported: remove from KNOWN_PRIVATE_IMPORTS: {gone}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import shared.a\n", {"shared.a"}),
        ("from shared import a\n", {"shared.a"}),
        ("from shared.a import thing\n", {"shared.a"}),
        ("from . import a\n", {"shared.a"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shared.a import T\n", set()),
        ("def later():\n    from shared.a import thing\n", {"shared.a"}),
    ],
)
def test_the_graph_reads_every_form_of_import(source: str, expected: set[str], tmp_path: Path) -> None:
    tree = ast.parse(source)
    known = {"shared", "shared.a", "shared.b"}
    found: set[str] = set()
    for node in runtime_imports(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
            continue
        origin = source_module("shared.b", tmp_path / "b.py", node)
        for alias in node.names:
            full = f"{origin}.{alias.name}"
            found.add(full if full in known else origin)
    assert found & known == expected


def test_a_cycle_is_found_however_long() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
