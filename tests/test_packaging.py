"""The distribution ships every package: each folder with an ``__init__.py`` is listed in pyproject.

An editable install finds any folder, so a package missing from ``packages`` only
breaks a real install (``pip install sluiceway``): this check catches it here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_in_the_distribution() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    roots = setuptools["package-dir"]  # dotted package -> its folder
    found = set()
    for package, folder in roots.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if any(part.startswith(".") or part == "__pycache__" for part in init.relative_to(base).parts):
                continue
            rel = init.parent.relative_to(base).parts
            found.add(".".join((package, *rel)))
    assert "sluiceway._execution" in found and "sluiceway.engine" in found
    assert sorted(found - listed) == [], "folders with an __init__.py that the distribution leaves out"
    assert sorted(listed - found) == [], "listed packages with no folder"
