"""Every package re-exports its public names explicitly (``X as X``), once each, and documents them."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

PACKAGES = (
    "sluiceway",
    "sluiceway.engine",
    "sluiceway.specs",
    "sluiceway.handlers",
    "sluiceway.providers",
    "sluiceway.testing",
    "sluiceway.tools",
    "sluiceway.aio",
)
# Imported on first access by a module __getattr__ (slow or optional dependencies).
LAZY = {
    "sluiceway": (
        "RunHandle",
        "invoke",
        "open_run",
        "run",
        "run_sync",
        "ModeUnavailableError",
        "ResumeError",
        "ResumeWarning",
        "StepContext",
        "tune_gc",
        "load",
        "loads",
        "RunResult",
        "StepResult",
        "FunctionTool",
        "ToolContext",
        "allow",
        "deny",
        "tool",
    ),
    "sluiceway.providers": ("AnthropicProvider", "AnthropicStatistics", "FastPathWarning"),
    "sluiceway.handlers": ("OtelHandler",),
    "sluiceway.testing": (
        "FakeAPI",
        "HandlerCheckError",
        "assert_handler_conforms",
        "check_handler",
        "chunkings",
        "event_streams",
    ),
}


def _reexports(package: str) -> list[tuple[str, ast.ImportFrom, ast.alias]]:
    init = Path(importlib.import_module(package).__file__)
    tree = ast.parse(init.read_text(encoding="utf-8"))
    return [
        (alias.asname or alias.name, node, alias)
        for node in tree.body  # top level only: TYPE_CHECKING blocks mirror the lazy names
        if isinstance(node, ast.ImportFrom) and node.module != "__future__"
        and not (node.module == "typing")
        for alias in node.names
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_names_are_reexported_once_explicitly_from_private_modules(package: str) -> None:
    entries = _reexports(package)
    names = [name for name, _, _ in entries]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    for name, node, alias in entries:
        assert alias.asname == alias.name, f"{package}: write `{alias.name} as {alias.name}`"
        leaf = (node.module or "").rsplit(".", 1)[-1]
        assert leaf.startswith("_"), f"{package}.{name} comes from a public module {node.module!r}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_class_and_function_is_documented(package: str) -> None:
    module = importlib.import_module(package)
    names = [name for name, _, _ in _reexports(package)] + list(LAZY.get(package, ()))
    undocumented = []
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            doc = obj.__doc__  # not inspect.getdoc: it would inherit a base class's docstring
            if not doc or not doc.strip():
                undocumented.append(name)
    assert undocumented == [], f"{package}: no docstring on {undocumented}"


def _type_checking_names(package: str) -> set[str]:
    init = Path(importlib.import_module(package).__file__)
    tree = ast.parse(init.read_text(encoding="utf-8"))
    return {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for stmt in node.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }


@pytest.mark.parametrize("package", ["sluiceway", "sluiceway.testing"])  # those with a _LAZY table
def test_lazy_names_are_the_listed_ones_and_resolve(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module._LAZY) == set(LAZY[package])
    for name in LAZY[package]:
        assert getattr(module, name).__name__ == name
    mirrored = _type_checking_names(package)
    if package == "sluiceway":  # the facade mirrors every lazy name for type checkers
        assert mirrored == set(LAZY[package])
