"""The built-in tools of a ``claude`` step, confined to the step's workspace.

``Toolbox`` implements the ``ToolRunner`` protocol the tool-use loop calls:
``definitions()`` gives the Messages API tool definitions to offer, and
``run(name, input)`` executes one call and returns ``(content, is_error)``.

Every failure the model can cause (an unknown tool, bad input, a missing file,
a path outside the workspace, a command that times out) is an *error result*
the model sees, never an exception: the loop goes on and the model may recover.

Confinement: every path is resolved (``..`` and symlinks included) before it is
used, and refused when the result is not inside the workspace. Nothing outside
is read, listed or written. A race with a process that swaps a directory for a
symlink between the check and the use is out of scope: the workspace is the
step's own.
"""

from __future__ import annotations

import fnmatch
import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final, TextIO

import jsonschema
import trio

from ._blocking import clock_jumps, run_blocking
from ._protocols import ToolRunner as ToolRunner  # the protocol Toolbox implements

__all__ = (
    "ALL_TOOLS",
    "DEFAULT_TOOLS",
    "TOOL_SCHEMAS",
    "ToolRunner",
    "Toolbox",
)

#: Characters of tool output the model sees at most; the rest is cut with a note.
MAX_OUTPUT_CHARS: Final = 30_000
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

#: Tools offered when ``allowed_tools`` is not set. ``Bash`` is never a default.
DEFAULT_TOOLS: Final = ("Read", "Write", "Edit", "Glob", "Grep", "LS")


def _schema(properties: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_STR: Final = {"type": "string"}

#: Name -> (description, JSON Schema of the input), in the order offered.
TOOL_SCHEMAS: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "Read": (
        "Read a text file in the workspace. Returns numbered lines (`N\\tline`). "
        "`offset` is the 1-based first line, `limit` the number of lines.",
        _schema(
            {
                "file_path": {**_STR, "description": "The file, relative to the workspace."},
                "offset": {"type": "integer", "minimum": 1, "description": "First line (1-based)."},
                "limit": {"type": "integer", "minimum": 1, "description": "Lines to read."},
            },
            ["file_path"],
        ),
    ),
    "Write": (
        "Write a file in the workspace, replacing it if it exists. Parent folders are created.",
        _schema(
            {
                "file_path": {**_STR, "description": "The file, relative to the workspace."},
                "content": {**_STR, "description": "The whole new content."},
            },
            ["file_path", "content"],
        ),
    ),
    "Edit": (
        "Replace `old_string` with `new_string` in a file. `old_string` must occur exactly "
        "once unless `replace_all` is true.",
        _schema(
            {
                "file_path": {**_STR, "description": "The file, relative to the workspace."},
                "old_string": {**_STR, "description": "The exact text to replace."},
                "new_string": {**_STR, "description": "The replacement."},
                "replace_all": {"type": "boolean", "description": "Replace every occurrence."},
            },
            ["file_path", "old_string", "new_string"],
        ),
    ),
    "Glob": (
        "List files matching a glob pattern (`**` matches folders recursively), "
        "relative to the workspace, sorted.",
        _schema(
            {
                "pattern": {**_STR, "description": "The pattern, e.g. `**/*.py`."},
                "path": {**_STR, "description": "The folder to search in (default: the workspace)."},
            },
            ["pattern"],
        ),
    ),
    "Grep": (
        "Search file contents with a regular expression (Python syntax). "
        "Returns `file:line:text` lines.",
        _schema(
            {
                "pattern": {**_STR, "description": "The regular expression."},
                "path": {**_STR, "description": "A file or folder to search (default: the workspace)."},
                "glob": {**_STR, "description": "Only files whose name matches, e.g. `*.py`."},
            },
            ["pattern"],
        ),
    ),
    "LS": (
        "List a folder of the workspace. Folders end in `/`, symlinks in `@`.",
        _schema(
            {"path": {**_STR, "description": "The folder (default: the workspace)."}},
            [],
        ),
    ),
    "Bash": (
        "Run a shell command in the workspace (no stdin). Returns stdout and stderr combined; "
        "a non-zero exit status or a timeout is an error.",
        _schema(
            {
                "command": {**_STR, "description": "The command."},
                "timeout": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": "Seconds before the command is killed.",
                },
            },
            ["command"],
        ),
    ),
}

#: Every built-in tool name.
ALL_TOOLS: Final = tuple(TOOL_SCHEMAS)

_VALIDATORS: Final = {
    name: jsonschema.Draft202012Validator(schema) for name, (_, schema) in TOOL_SCHEMAS.items()
}


class _ToolFailure(Exception):
    """An error result for the model (internal: ``run`` turns it into ``(msg, True)``)."""


def _cap(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [output truncated: {len(text) - limit} more characters]"


def _kill_session(pid: int) -> None:
    """Kill the command and everything it started (it runs in its own session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass


async def _kill_group(process: trio.Process) -> None:
    """``trio.run_process``'s ``deliver_cancel``: ``_kill_session``."""
    _kill_session(process.pid)


class _Output:
    """A command's output as it is read: a bounded prefix kept, the rest counted and dropped.

    Everything is read (a full pipe would stall the command); the text is capped after.
    """

    __slots__ = ("chunks", "dropped", "kept")

    #: Bytes kept.
    LIMIT: Final = MAX_OUTPUT_CHARS * 4

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.kept = 0
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        if self.kept < self.LIMIT:
            self.chunks.append(chunk)
            self.kept += len(chunk)
        else:
            self.dropped += len(chunk)


def _bash_blocking(argv: list[str], cwd: Path, timeout: float) -> tuple[_Output, bool, int | None]:
    """Run *argv* to its end on this thread, as ``_bash`` does under trio: ``(output, timed out, status)``.

    For virtual time only (it blocks the event loop): reads everything, keeps a
    bounded prefix, and kills the command's session after *timeout* real seconds.
    """
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd,
        env=_bash_env(), start_new_session=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    out = _Output()
    timed_out = False
    with process.stdout:
        fd = process.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                timed_out = True
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out.add(chunk)
    if timed_out:
        _kill_session(process.pid)
    return out, timed_out, process.wait()


def _bash_outcome(out: _Output, timed_out: bool, status: int | None, timeout: float) -> str:
    """A command's tool result from its output: the text, or ``_ToolFailure`` (timed out, non-zero exit)."""
    output = b"".join(out.chunks).decode("utf-8", errors="replace")
    if out.dropped:
        output += f"\n... [{out.dropped} more bytes of output dropped]"
    output = _cap(output)
    if timed_out:
        raise _ToolFailure(f"command timed out after {timeout:g}s and was killed\n{output}".rstrip())
    if status != 0:
        raise _ToolFailure(f"{output}\n[exit status {status}]".lstrip())
    return output if output else "(no output)"


def _open_for_write(path: Path) -> TextIO:
    """Open the resolved *path* for writing, refusing a symlink swapped in since the check."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o666)
    # newline="" keeps the model's line endings as written
    return open(fd, "w", encoding="utf-8", newline="")


def _bash_env() -> dict[str, str]:
    """The environment of a ``Bash`` command: ours, without the Anthropic credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}


class Toolbox:
    """The built-in tools, confined to *workspace*. Implements ``ToolRunner``.

    Args:
        workspace: The folder every path resolves inside.
        allowed: Tools to offer; ``None`` offers ``DEFAULT_TOOLS`` (no ``Bash``).
            Names that are not built-in tools are ignored (see ``unknown``).
        disallowed: Tools removed from *allowed*.
        bash_timeout: Default seconds a ``Bash`` command may run.
        cwd: The folder relative paths start from, relative to the workspace
            (``claude_options.cwd``); it must stay inside the workspace.

    Raises:
        ValueError: *cwd* escapes the workspace, or *bash_timeout* is not positive.
    """

    def __init__(
        self,
        workspace: str | os.PathLike[str],
        *,
        allowed: Sequence[str] | None,
        disallowed: Sequence[str] | None = None,
        bash_timeout: float = 30.0,
        cwd: str | None = None,
    ) -> None:
        if not bash_timeout > 0:
            raise ValueError(f"bash_timeout must be positive, got {bash_timeout!r}")
        self.workspace: Path = Path(os.path.realpath(workspace))
        """The resolved workspace folder."""
        requested = DEFAULT_TOOLS if allowed is None else tuple(allowed)
        removed = set(disallowed or ())
        self.tools: tuple[str, ...] = tuple(
            name for name in ALL_TOOLS if name in requested and name not in removed
        )
        """The tools offered, in ``ALL_TOOLS`` order."""
        self.unknown: tuple[str, ...] = tuple(n for n in requested if n not in TOOL_SCHEMAS)
        """Names in *allowed* that are not built-in tools (ignored; a caller may warn)."""
        self.bash_timeout = bash_timeout
        base = self.workspace if cwd is None else self._confine(cwd, self.workspace)
        if base is None:
            raise ValueError(f"cwd escapes the workspace: {cwd!r}")
        self.base: Path = base
        """The folder relative paths start from."""
        self._runners: dict[str, Callable[[Mapping[str, Any]], Awaitable[str]]] = {
            "Read": self._read,
            "Write": self._write,
            "Edit": self._edit,
            "Glob": self._glob,
            "Grep": self._grep,
            "LS": self._ls,
            "Bash": self._bash,
        }

    # ------------------------------------------------------------------ protocol

    def definitions(self) -> tuple[dict[str, Any], ...]:
        """Return the Messages API definitions (name, description, input_schema) offered."""
        return tuple(
            {"name": name, "description": TOOL_SCHEMAS[name][0], "input_schema": TOOL_SCHEMAS[name][1]}
            for name in self.tools
        )

    async def run(self, name: str, input: Mapping[str, Any]) -> tuple[str, bool]:
        """Run tool *name* with *input*; return ``(content, is_error)``.

        Unknown or not-offered tools, invalid input, paths outside the workspace
        and I/O errors are error results, not exceptions. Cancellation propagates
        (a running ``Bash`` command is killed first). Blocks while file I/O runs in
        a worker thread or the command runs.
        """
        if name not in TOOL_SCHEMAS:
            return f"unknown tool: {name!r}", True
        if name not in self.tools:
            return f"tool not allowed in this step: {name!r}", True
        if not isinstance(input, Mapping):
            return f"invalid input for {name}: expected an object, got {type(input).__name__}", True
        error = jsonschema.exceptions.best_match(_VALIDATORS[name].iter_errors(dict(input)))
        if error is not None:
            where = "".join(f"[{p!r}]" for p in error.absolute_path)
            return f"invalid input for {name}{': ' + where if where else ''}: {error.message}", True
        try:
            return await self._runners[name](input), False
        except _ToolFailure as exc:
            return str(exc), True
        except OSError as exc:  # what the tool did not foresee (permissions, odd files...)
            return f"{name} failed: {exc.strerror or exc}", True

    # ------------------------------------------------------------------ paths

    def _confine(self, raw: str, base: Path) -> Path | None:
        """Resolve *raw* (relative to *base*) with symlinks; ``None`` when outside the workspace."""
        candidate = Path(raw) if os.path.isabs(raw) else base / raw
        resolved = Path(os.path.realpath(candidate))
        if resolved == self.workspace or resolved.is_relative_to(self.workspace):
            return resolved
        return None

    def _resolve(self, raw: str) -> Path:
        try:
            resolved = self._confine(raw, self.base)
        except ValueError:  # an embedded NUL
            raise _ToolFailure(f"invalid path: {raw!r}") from None
        if resolved is None:
            raise _ToolFailure(f"path escapes the workspace: {raw!r}")
        return resolved

    def _show(self, path: Path) -> str:
        """Name *path* for the model: relative to the workspace."""
        rel = os.path.relpath(path, self.workspace)
        return "." if rel == "." else rel

    # ------------------------------------------------------------------ tools

    async def _read(self, input: Mapping[str, Any]) -> str:
        path = self._resolve(input["file_path"])
        return await run_blocking(self._read_sync, path, input)

    def _read_sync(self, path: Path, input: Mapping[str, Any]) -> str:
        raw: str = input["file_path"]
        offset: int = input.get("offset", 1)
        limit: int = input.get("limit", DEFAULT_READ_LIMIT)
        if path.is_dir():
            raise _ToolFailure(f"is a directory, not a file: {raw!r} (use LS)")
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
            raise _ToolFailure(f"file not found: {raw!r}") from None
        except OSError as exc:
            raise _ToolFailure(f"cannot read {raw!r}: {exc.strerror or exc}") from None
        if count == 0:
            return "(empty file)"
        if not chosen:
            raise _ToolFailure(f"offset {offset} is past the end of {self._show(path)} ({count} lines)")
        out = "\n".join(chosen)
        if cut:
            out += f"\n... [output truncated at line {offset + len(chosen) - 1}; use offset to read on]"
        return out

    async def _write(self, input: Mapping[str, Any]) -> str:
        path = self._resolve(input["file_path"])
        content: str = input["content"]
        await run_blocking(self._write_text, path, content, input["file_path"])
        return f"Wrote {len(content.encode('utf-8'))} bytes to {self._show(path)}"

    def _write_text(self, path: Path, content: str, raw: str) -> None:
        try:
            if path.is_dir():
                raise _ToolFailure(f"is a directory, not a file: {raw!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            with _open_for_write(path) as f:
                f.write(content)
        except OSError as exc:
            raise _ToolFailure(f"cannot write {raw!r}: {exc.strerror or exc}") from None

    async def _edit(self, input: Mapping[str, Any]) -> str:
        path = self._resolve(input["file_path"])
        return await run_blocking(self._edit_sync, path, input)

    def _edit_sync(self, path: Path, input: Mapping[str, Any]) -> str:
        raw, old, new = input["file_path"], input["old_string"], input["new_string"]
        if old == "":
            raise _ToolFailure("old_string must not be empty (use Write to create a file)")
        if old == new:
            raise _ToolFailure("old_string and new_string are the same; nothing to change")
        try:
            with open(path, encoding="utf-8", newline="") as f:
                text = f.read()
        except FileNotFoundError:
            raise _ToolFailure(f"file not found: {raw!r}") from None
        except UnicodeDecodeError:
            raise _ToolFailure(f"not a UTF-8 text file: {raw!r}") from None
        except OSError as exc:
            raise _ToolFailure(f"cannot read {raw!r}: {exc.strerror or exc}") from None
        count = text.count(old)
        if count == 0:
            raise _ToolFailure(f"old_string not found in {self._show(path)}")
        if count > 1 and not input.get("replace_all", False):
            raise _ToolFailure(
                f"old_string occurs {count} times in {self._show(path)}; "
                "give more context to make it unique, or set replace_all"
            )
        try:
            with _open_for_write(path) as f:
                f.write(text.replace(old, new))
        except OSError as exc:
            raise _ToolFailure(f"cannot write {raw!r}: {exc.strerror or exc}") from None
        return f"Replaced {count} occurrence{'s' if count > 1 else ''} in {self._show(path)}"

    async def _glob(self, input: Mapping[str, Any]) -> str:
        pattern: str = input["pattern"]
        base = self._resolve(input.get("path", "."))
        return await run_blocking(self._glob_sync, base, pattern)

    def _glob_sync(self, base: Path, pattern: str) -> str:
        if os.path.isabs(pattern):
            raise _ToolFailure(f"pattern must be relative (use `path` for the folder): {pattern!r}")
        if not base.is_dir():
            raise _ToolFailure(f"not a folder: {self._show(base)}")
        found: set[str] = set()
        try:
            for match in base.glob(pattern):
                # a symlink, or `..` in the pattern, may lead outside: never show those
                if self._confine(str(match), base) is None:
                    continue
                found.add(os.path.relpath(match, self.workspace))
        except (ValueError, NotImplementedError) as exc:
            raise _ToolFailure(f"invalid pattern {pattern!r}: {exc}") from None
        if not found:
            return "No files found."
        names = sorted(found)
        out = "\n".join(names[:MAX_GLOB_RESULTS])
        if len(names) > MAX_GLOB_RESULTS:
            out += f"\n... [{len(names) - MAX_GLOB_RESULTS} more]"
        return _cap(out)

    async def _grep(self, input: Mapping[str, Any]) -> str:
        try:
            regex = re.compile(input["pattern"])
        except re.error as exc:
            raise _ToolFailure(f"invalid regular expression {input['pattern']!r}: {exc}") from None
        base = self._resolve(input.get("path", "."))
        return await run_blocking(self._grep_sync, base, regex, input.get("glob"))

    def _grep_files(self, base: Path, glob: str | None) -> list[Path]:
        if base.is_file():
            return [base]
        if not base.is_dir():
            raise _ToolFailure(f"not found: {self._show(base)}")
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

    def _grep_sync(self, base: Path, regex: re.Pattern[str], glob: str | None) -> str:
        lines: list[str] = []
        total = 0
        for path in self._grep_files(base, glob):
            resolved = self._confine(str(path), base)
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
            shown = os.path.relpath(path, self.workspace)
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
        return _cap(out)

    async def _ls(self, input: Mapping[str, Any]) -> str:
        path = self._resolve(input.get("path", "."))
        return await run_blocking(self._ls_sync, path)

    def _ls_sync(self, path: Path) -> str:
        if not path.exists():
            raise _ToolFailure(f"not found: {self._show(path)}")
        if not path.is_dir():
            raise _ToolFailure(f"not a folder: {self._show(path)}")
        entries = []
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.is_symlink():
                entries.append(entry.name + "@")
            elif entry.is_dir():
                entries.append(entry.name + "/")
            else:
                entries.append(entry.name)
        if not entries:
            return f"{self._show(path)}: (empty folder)"
        return _cap(f"{self._show(path)}:\n" + "\n".join(entries))

    async def _bash(self, input: Mapping[str, Any]) -> str:
        command: str = input["command"]
        timeout = float(input.get("timeout", self.bash_timeout))
        shell = shutil.which("bash") or "/bin/sh"
        if clock_jumps():
            # virtual time: trio's process wait would look idle and the clock would jump to the
            # timeout; run it here, on real time, while virtual time stands still
            await trio.lowlevel.checkpoint()
            return _bash_outcome(*_bash_blocking([shell, "-c", command], self.base, timeout), timeout)
        out = _Output()
        process: trio.Process | None = None  # (a timeout may come before it has started)
        with trio.move_on_after(timeout) as scope:
            async with trio.open_nursery() as nursery:
                process = await nursery.start(
                    partial(
                        trio.run_process,
                        [shell, "-c", command],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        cwd=self.base,
                        check=False,
                        env=_bash_env(),  # the model must not read our API key
                        start_new_session=True,  # so a timeout kills its children too
                        deliver_cancel=_kill_group,
                    )
                )
                assert process.stdout is not None
                async for chunk in process.stdout:
                    out.add(chunk)
        status = None if process is None else process.returncode
        return _bash_outcome(out, scope.cancelled_caught, status, timeout)
