"""``sluiceway.specs`` re-exports its public names once, each documented, from private modules."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import attrs
import sluiceway.specs as specs

import sluiceway

INIT = Path(specs.__file__)


def test_every_export_is_listed_once_and_comes_from_a_private_module() -> None:
    tree = ast.parse(INIT.read_text())
    names = [
        alias.asname
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    assert len(names) == len(set(names))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            assert node.module and node.module.startswith("_"), node.module
            for alias in node.names:
                assert alias.asname == alias.name  # `X as X`: an explicit re-export
    public = {n for n in dir(specs) if not n.startswith("_")} - {"annotations"}
    modules = {n for n in public if inspect.ismodule(getattr(specs, n))}
    assert public - modules == set(names)


def test_every_exported_class_and_function_is_documented() -> None:
    for name in dir(specs):
        obj = getattr(specs, name)
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        assert inspect.getdoc(obj), name
        if attrs.has(obj):
            assert obj.__module__ == "sluiceway.specs._model"


def test_facade_load_is_the_checked_loader() -> None:
    assert sluiceway.load.__module__ == "sluiceway._load"
    assert sluiceway.loads.__module__ == "sluiceway._load"
