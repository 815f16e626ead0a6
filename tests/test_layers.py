"""The layers of DESIGN.md hold in the code, and no import cycle joins our modules.

The arrows: ``specs`` <- facade -> ``engine`` <- ``providers``, ``handlers``, ``tools``,
and every layer may import the error tree (``sluiceway._errors``), which imports
nothing of ours. The test reads the sources (AST), so it sees every import,
including those inside functions and ``TYPE_CHECKING`` blocks, without running any.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ERRORS = "sluiceway._errors"

#: Layer -> the layers it may import (itself always, and the error leaf).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "specs": {"errors"},
    "engine": {"errors"},
    "providers": {"engine", "errors"},
    "handlers": {"engine", "errors"},
    "tools": {"engine", "errors"},
    "facade": {"specs", "engine", "providers", "handlers", "tools", "errors"},
}


def _packages() -> dict[str, Path]:
    """Dotted package -> its folder, from pyproject's ``package-dir``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_dir = config["tool"]["setuptools"]["package-dir"]
    packages = config["tool"]["setuptools"]["packages"]
    folders = {}
    for package in packages:
        head, _, tail = package.partition(".")
        base = package_dir.get(package)
        if base is None:  # a subpackage of a mapped package: sluiceway.testing
            parent, _, leaf = package.rpartition(".")
            base = str(Path(package_dir[parent]) / leaf)
        folders[package] = ROOT / base
    return folders


def _modules() -> dict[str, Path]:
    """Every module of ours: dotted name -> file."""
    modules = {}
    for package, folder in _packages().items():
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


MODULES = _modules()


def layer_of(module: str) -> str:
    if module == ERRORS:
        return "errors"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ALLOWED and parts[1] != "facade":
        return parts[1]
    return "facade"


def _package_of(module: str) -> str:
    is_package = MODULES[module].stem == "__init__"
    return module if is_package else module.rpartition(".")[0]


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """Our modules an import statement names (a package stands for its ``__init__``)."""
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        if node.level:
            base = _package_of(module)
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.module else base
        else:
            target = node.module or ""
        # `from pkg import sub` names the submodule when there is one, else pkg itself
        candidates = [
            f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target
            for alias in node.names
        ]
    for name in candidates:
        if name in MODULES:
            yield name


def _implied(importer: str, target: str) -> Iterator[str]:
    """*target* and the packages Python initializes on the way to it.

    A package that also contains the importer is already being initialized, so
    importing through it is no edge (``engine/_step`` importing ``._events``).
    """
    yield target
    parts = target.split(".")
    for i in range(1, len(parts)):
        package = ".".join(parts[:i])
        if package in MODULES and not importer.startswith(package + "."):
            yield package


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is imported (not in functions or TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def _trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


TREES = _trees()


def every_edge() -> set[tuple[str, str, int]]:
    """(importer, imported, line) for every import of ours, wherever it stands."""
    edges = set()
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(module, node):
                    for implied in _implied(module, target):
                        edges.add((module, implied, node.lineno))
    return edges


def load_time_graph() -> dict[str, set[str]]:
    """importer -> what importing it imports at once (module level)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for module, tree in TREES.items():
        for node in _module_level(tree.body):
            for target in _targets(module, node):
                graph[module].update(t for t in _implied(module, target) if t != module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of *graph* as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walk_sees_every_package_and_layer() -> None:
    layers = {layer_of(m) for m in MODULES}
    assert {"errors", "specs", "engine", "providers", "handlers", "facade"} <= layers
    assert len(MODULES) > 60, sorted(MODULES)
    # the walk finds known edges, so an empty result below means something
    edges = {(a, b) for a, b, _ in every_edge()}
    assert ("sluiceway.specs._load", "sluiceway.specs._model") in edges
    assert ("sluiceway.handlers._base", "sluiceway.engine") in edges


def test_no_import_crosses_a_layer_the_wrong_way() -> None:
    wrong = sorted(
        f"{MODULES[a].relative_to(ROOT)}:{line}: {layer_of(a)} imports {b} ({layer_of(b)})"
        for a, b, line in every_edge()
        if layer_of(b) != layer_of(a) and layer_of(b) not in ALLOWED[layer_of(a)]
    )
    assert wrong == []


def test_no_import_cycle_between_modules() -> None:
    assert find_cycle(load_time_graph()) is None


def test_no_cycle_even_through_deferred_or_type_only_imports() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for a, b, _ in every_edge():
        if a != b:
            graph[a].add(b)
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("sluiceway.specs", ("sluiceway.engine", "sluiceway.providers", "sluiceway.handlers")),
        ("sluiceway._errors", ("sluiceway.engine", "sluiceway.specs", "sluiceway._api")),
        ("sluiceway.engine", ("sluiceway.specs", "sluiceway.providers", "sluiceway.handlers")),
    ],
)
def test_importing_a_layer_loads_nothing_above_it(package: str, forbidden: tuple[str, ...]) -> None:
    code = f"import sys, {package}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert package in out
    loaded = [m for m in out if m.startswith(forbidden)]
    assert loaded == []
