"""Confinement to a step's workspace: every path a tool touches is resolved here.

Every path is resolved (``..`` and symlinks included) before it is used, and
refused when the result is not inside the workspace. A race with a process that
swaps a directory for a symlink between the check and the use is out of scope:
the workspace is the step's own.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._results import ToolFailure

__all__ = ("Workspace",)


class Workspace:
    """A workspace folder, and the folder relative paths start from.

    Args:
        root: The folder every path must resolve inside.
        cwd: The folder relative paths start from, relative to *root*; it must
            stay inside.

    Raises:
        ValueError: *cwd* escapes the workspace.
    """

    __slots__ = ("base", "root")

    def __init__(self, root: str | os.PathLike[str], cwd: str | None = None) -> None:
        self.root: Path = Path(os.path.realpath(root))
        """The resolved workspace folder."""
        base = self.root if cwd is None else self.confine(cwd, self.root)
        if base is None:
            raise ValueError(f"cwd escapes the workspace: {cwd!r}")
        self.base: Path = base
        """The folder relative paths start from."""

    def confine(self, raw: str, base: Path) -> Path | None:
        """Resolve *raw* (relative to *base*) with symlinks; ``None`` when outside the workspace."""
        candidate = Path(raw) if os.path.isabs(raw) else base / raw
        resolved = Path(os.path.realpath(candidate))
        if resolved == self.root or resolved.is_relative_to(self.root):
            return resolved
        return None

    def resolve(self, raw: str) -> Path:
        """Resolve a path the model gave (relative to ``base``); ``ToolFailure`` when it escapes."""
        try:
            resolved = self.confine(raw, self.base)
        except ValueError:  # an embedded NUL
            raise ToolFailure(f"invalid path: {raw!r}") from None
        if resolved is None:
            raise ToolFailure(f"path escapes the workspace: {raw!r}")
        return resolved

    def show(self, path: Path) -> str:
        """Name *path* for the model: relative to the workspace."""
        rel = os.path.relpath(path, self.root)
        return "." if rel == "." else rel
