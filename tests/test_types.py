"""mypy over the whole package, with zero errors.

mypy cannot follow pyproject's ``package-dir`` (top-level folders that are
subpackages of ``sluiceway``), so the test lays the package out as installed,
with symbolic links, and checks that tree. Messages name the real files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mypy", reason="mypy is in the test extra: pip install -e '.[test]'")


def _installed_layout(into: Path) -> Path:
    """``into/sluiceway`` laid out as installed: links to our folders and files."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    top = into / "sluiceway"
    top.mkdir()
    for entry in (ROOT / package_dir["sluiceway"]).iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for package, folder in package_dir.items():
        if package != "sluiceway":
            (top / package.split(".", 1)[1]).symlink_to(ROOT / folder)
    return top


def test_mypy_finds_no_errors(tmp_path: Path) -> None:
    _installed_layout(tmp_path)
    done = subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(ROOT / ".mypy_cache"),
            "-p", "sluiceway",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MYPYPATH": ""},
    )
    assert done.returncode == 0, done.stdout.replace(str(tmp_path / "sluiceway"), "<sluiceway>")
    assert done.stdout.startswith("Success: no issues found in ")


def test_the_layout_holds_every_module(tmp_path: Path) -> None:
    top = _installed_layout(tmp_path)
    for name in ("engine/_step.py", "specs/_model.py", "providers/_anthropic.py", "handlers/_file.py", "_api.py"):
        assert (top / name).is_file(), name
