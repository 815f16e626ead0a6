"""The file tools (Read, Write, Edit, Glob, Grep, LS), confined to the step's workspace.

Each tool is an ``async`` method taking the model's (validated) input; its file
I/O runs through ``run_blocking`` (a worker thread, inline under a virtual clock).
Every failure the model can cause is a ``ToolFailure`` (an error result).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TextIO

from ._blocking import run_blocking
from ._results import MAX_OUTPUT_CHARS, ToolFailure, cap
from ._workspace import Workspace

__all__ = ("FileTools",)

#: Lines ``Read`` returns when no ``limit`` is given.
DEFAULT_READ_LIMIT: Final = 2000
#: Characters of one line that ``Read`` and ``Grep`` show.
MAX_LINE_CHARS: Final = 2000
#: Paths ``Glob`` lists at most.
MAX_GLOB_RESULTS: Final = 1000
#: Matching lines ``Grep`` reports at most.
MAX_GREP_MATCHES: Final = 500
#: Bytes of a file ``Grep`` looks at; larger files are skipped.
MAX_GREP_FILE_BYTES: Final = 10_000_000
#: Directories ``Grep`` never descends into.
_GREP_SKIP_DIRS: Final = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules"})


def _open_for_write(path: Path) -> TextIO:
    """Open the resolved *path* for writing, refusing a symlink swapped in since the check."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o666)
    # newline="" keeps the model's line endings as written
    return open(fd, "w", encoding="utf-8", newline="")


class FileTools:
    """The file tools of one ``Toolbox``: each method runs one tool call on *workspace*.

    The ``*_sync`` methods are the blocking parts, run off the event loop.
    """

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        """Where every path resolves."""

    async def read(self, input: Mapping[str, Any]) -> str:
        path = self.workspace.resolve(input["file_path"])
        return await run_blocking(self.read_sync, path, input)

    def read_sync(self, path: Path, input: Mapping[str, Any]) -> str:
        raw: str = input["file_path"]
        offset: int = input.get("offset", 1)
        limit: int = input.get("limit", DEFAULT_READ_LIMIT)
        if path.is_dir():
            raise ToolFailure(f"is a directory, not a file: {raw!r} (use LS)")
        chosen: list[str] = []
        size = count = 0
        cut = False
        try:
            # stream the lines: a huge file costs only the lines shown
            with open(path, encoding="utf-8", errors="replace") as f:
                for count, line in enumerate(f, start=1):
                    if count < offset:
                        continue
                    if len(chosen) >= limit:
                        break
                    if size > MAX_OUTPUT_CHARS:
                        cut = True
                        break
                    shown = line.rstrip("\n")[:MAX_LINE_CHARS]
                    chosen.append(f"{count:6}\t{shown}")
                    size += len(shown) + 8
        except FileNotFoundError:
            raise ToolFailure(f"file not found: {raw!r}") from None
        except OSError as exc:
            raise ToolFailure(f"cannot read {raw!r}: {exc.strerror or exc}") from None
        if count == 0:
            return "(empty file)"
        if not chosen:
            raise ToolFailure(f"offset {offset} is past the end of {self.workspace.show(path)} ({count} lines)")
        out = "\n".join(chosen)
        if cut:
            out += f"\n... [output truncated at line {offset + len(chosen) - 1}; use offset to read on]"
        return out

    async def write(self, input: Mapping[str, Any]) -> str:
        path = self.workspace.resolve(input["file_path"])
        content: str = input["content"]
        await run_blocking(self.write_text, path, content, input["file_path"])
        return f"Wrote {len(content.encode('utf-8'))} bytes to {self.workspace.show(path)}"

    def write_text(self, path: Path, content: str, raw: str) -> None:
        try:
            if path.is_dir():
                raise ToolFailure(f"is a directory, not a file: {raw!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            with _open_for_write(path) as f:
                f.write(content)
        except OSError as exc:
            raise ToolFailure(f"cannot write {raw!r}: {exc.strerror or exc}") from None

    async def edit(self, input: Mapping[str, Any]) -> str:
        path = self.workspace.resolve(input["file_path"])
        return await run_blocking(self.edit_sync, path, input)

    def edit_sync(self, path: Path, input: Mapping[str, Any]) -> str:
        raw, old, new = input["file_path"], input["old_string"], input["new_string"]
        if old == "":
            raise ToolFailure("old_string must not be empty (use Write to create a file)")
        if old == new:
            raise ToolFailure("old_string and new_string are the same; nothing to change")
        try:
            with open(path, encoding="utf-8", newline="") as f:
                text = f.read()
        except FileNotFoundError:
            raise ToolFailure(f"file not found: {raw!r}") from None
        except UnicodeDecodeError:
            raise ToolFailure(f"not a UTF-8 text file: {raw!r}") from None
        except OSError as exc:
            raise ToolFailure(f"cannot read {raw!r}: {exc.strerror or exc}") from None
        count = text.count(old)
        if count == 0:
            raise ToolFailure(f"old_string not found in {self.workspace.show(path)}")
        if count > 1 and not input.get("replace_all", False):
            raise ToolFailure(
                f"old_string occurs {count} times in {self.workspace.show(path)}; "
                "give more context to make it unique, or set replace_all"
            )
        try:
            with _open_for_write(path) as f:
                f.write(text.replace(old, new))
        except OSError as exc:
            raise ToolFailure(f"cannot write {raw!r}: {exc.strerror or exc}") from None
        return f"Replaced {count} occurrence{'s' if count > 1 else ''} in {self.workspace.show(path)}"

    async def glob(self, input: Mapping[str, Any]) -> str:
        pattern: str = input["pattern"]
        base = self.workspace.resolve(input.get("path", "."))
        return await run_blocking(self.glob_sync, base, pattern)

    def glob_sync(self, base: Path, pattern: str) -> str:
        if os.path.isabs(pattern):
            raise ToolFailure(f"pattern must be relative (use `path` for the folder): {pattern!r}")
        if not base.is_dir():
            raise ToolFailure(f"not a folder: {self.workspace.show(base)}")
        found: set[str] = set()
        try:
            for match in base.glob(pattern):
                # a symlink, or `..` in the pattern, may lead outside: never show those
                if self.workspace.confine(str(match), base) is None:
                    continue
                found.add(os.path.relpath(match, self.workspace.root))
        except (ValueError, NotImplementedError) as exc:
            raise ToolFailure(f"invalid pattern {pattern!r}: {exc}") from None
        if not found:
            return "No files found."
        names = sorted(found)
        out = "\n".join(names[:MAX_GLOB_RESULTS])
        if len(names) > MAX_GLOB_RESULTS:
            out += f"\n... [{len(names) - MAX_GLOB_RESULTS} more]"
        return cap(out)

    async def grep(self, input: Mapping[str, Any]) -> str:
        try:
            regex = re.compile(input["pattern"])
        except re.error as exc:
            raise ToolFailure(f"invalid regular expression {input['pattern']!r}: {exc}") from None
        base = self.workspace.resolve(input.get("path", "."))
        return await run_blocking(self.grep_sync, base, regex, input.get("glob"))

    def grep_files(self, base: Path, glob: str | None) -> list[Path]:
        if base.is_file():
            return [base]
        if not base.is_dir():
            raise ToolFailure(f"not found: {self.workspace.show(base)}")
        files: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(base):  # does not follow symlinked dirs
            dirnames[:] = sorted(d for d in dirnames if d not in _GREP_SKIP_DIRS)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if glob is not None:
                    rel = os.path.relpath(path, base)
                    target = rel if "/" in glob else name
                    if not fnmatch.fnmatch(target, glob):
                        continue
                files.append(path)
        return files

    def grep_sync(self, base: Path, regex: re.Pattern[str], glob: str | None) -> str:
        lines: list[str] = []
        total = 0
        for path in self.grep_files(base, glob):
            resolved = self.workspace.confine(str(path), base)
            if resolved is None or not resolved.is_file():  # a symlink leading outside
                continue
            try:
                if resolved.stat().st_size > MAX_GREP_FILE_BYTES:
                    continue
                data = resolved.read_bytes()
            except OSError:
                continue
            if b"\0" in data[:8192]:  # binary
                continue
            shown = os.path.relpath(path, self.workspace.root)
            text = data.decode("utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), start=1):
                if regex.search(line):
                    total += 1
                    if len(lines) < MAX_GREP_MATCHES:
                        lines.append(f"{shown}:{number}:{line[:MAX_LINE_CHARS]}")
        if not lines:
            return "No matches found."
        out = "\n".join(lines)
        if total > len(lines):
            out += f"\n... [{total - len(lines)} more matches]"
        return cap(out)

    async def ls(self, input: Mapping[str, Any]) -> str:
        path = self.workspace.resolve(input.get("path", "."))
        return await run_blocking(self.ls_sync, path)

    def ls_sync(self, path: Path) -> str:
        if not path.exists():
            raise ToolFailure(f"not found: {self.workspace.show(path)}")
        if not path.is_dir():
            raise ToolFailure(f"not a folder: {self.workspace.show(path)}")
        entries = []
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.is_symlink():
                entries.append(entry.name + "@")
            elif entry.is_dir():
                entries.append(entry.name + "/")
            else:
                entries.append(entry.name)
        if not entries:
            return f"{self.workspace.show(path)}: (empty folder)"
        return cap(f"{self.workspace.show(path)}:\n" + "\n".join(entries))
