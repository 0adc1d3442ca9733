"""The package's import graph keeps its layers (docs/design.md, "Module map"): no import cycle,
nothing in ``methods/`` or ``data/`` reaching up into training, experiments or reporting, and
no loose reporting modules at the package root. Imports inside functions count too, and so do
imports under ``if TYPE_CHECKING:`` (never run, but a reader follows those names as well)."""

from __future__ import annotations

import ast
from pathlib import Path

import mmbalance

PACKAGE = Path(mmbalance.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``module -> modules of the package it imports``, anywhere in the file (``from a import
    b`` counts as an import of ``a.b`` when that is a module: that is what gets executed)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{a.name}"
                    if f"{node.module}.{a.name}" in modules
                    else node.module
                    for a in node.names
                ]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_package_has_no_import_cycle() -> None:
    assert _cycles(import_graph()) == []


def test_methods_and_data_do_not_reach_up() -> None:
    upper = ("mmbalance.training", "mmbalance.experiment", "mmbalance.reporting", "mmbalance.cli")
    upper += ("mmbalance.api", "mmbalance.testing")
    bad = [
        f"{src} -> {dst}"
        for src, dsts in import_graph().items()
        if src.startswith(("mmbalance.methods", "mmbalance.data", "mmbalance.models"))
        for dst in dsts
        if dst.startswith(upper)
    ]
    assert bad == []


def test_reporting_lives_in_one_package() -> None:
    loose = {"plots", "report", "diagnose", "compare", "cost"} & {
        p.stem for p in PACKAGE.glob("*.py")
    }
    assert loose == set()
    assert {"plots", "report", "diagnose", "compare", "cost"} <= {
        p.stem for p in (PACKAGE / "reporting").glob("*.py")
    }
