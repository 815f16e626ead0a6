"""The built-in tools of a ``claude`` step, behind the engine's ``ToolRunner`` protocol.

``Toolbox`` implements the ``ToolRunner`` protocol the tool-use loop calls:
``definitions()`` gives the Messages API tool definitions to offer, and
``run(name, input)`` executes one call and returns ``(content, is_error)``.

Every failure the model can cause (an unknown tool, bad input, a missing file,
a path outside the workspace, a command that times out) is an *error result*
the model sees, never an exception: the loop goes on and the model may recover.
The tools themselves live in ``_files`` and ``_bash``, their definitions in
``_schemas``, the confinement of the file tools to the workspace in
``_workspace``, and the sandbox ``Bash`` runs in in ``_sandbox``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema

from ._bash import run_bash
from ._files import FileTools
from ._results import ToolFailure
from ._sandbox import (
    DEFAULT_SANDBOX,
    NO_BWRAP,
    SANDBOXES,
    bwrap_argv,
    find_bwrap,
    host_env,
    sandbox_env,
)
from ._schemas import ALL_TOOLS, DEFAULT_TOOLS, TOOL_SCHEMAS, VALIDATORS
from ._workspace import Workspace

__all__ = ("Toolbox",)


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
        sandbox: Where ``Bash`` runs: ``bubblewrap`` (the workspace read-write, the
            system read-only, nothing else; see ``sluiceway.tools._sandbox``) or
            ``none`` (on the host, with our environment minus ``ANTHROPIC_*``: not
            confined at all; the step runner warns about it on every run).
        sandbox_network: Let sandboxed ``Bash`` commands use the network (default: only loopback).

    Raises:
        ValueError: *cwd* escapes the workspace, *bash_timeout* is not positive,
            *sandbox* is unknown, or ``Bash`` is offered in ``bubblewrap`` and
            ``bwrap`` is not on ``PATH``.
    """

    def __init__(
        self,
        workspace: str | os.PathLike[str],
        *,
        allowed: Sequence[str] | None,
        disallowed: Sequence[str] | None = None,
        bash_timeout: float = 30.0,
        cwd: str | None = None,
        sandbox: str = DEFAULT_SANDBOX,
        sandbox_network: bool = False,
    ) -> None:
        if not bash_timeout > 0:
            raise ValueError(f"bash_timeout must be positive, got {bash_timeout!r}")
        if sandbox not in SANDBOXES:
            raise ValueError(f"sandbox must be one of {', '.join(SANDBOXES)}, got {sandbox!r}")
        self.files = FileTools(Workspace(workspace, cwd))
        """The file tools, and the workspace they are confined to."""
        self.workspace: Path = self.files.workspace.root
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
        self.base: Path = self.files.workspace.base
        """The folder relative paths start from."""
        self.sandbox = sandbox
        """Where ``Bash`` runs: ``bubblewrap`` or ``none``."""
        self.sandbox_network = sandbox_network
        # the command line a Bash command is appended to
        self._shell = [shutil.which("bash") or "/bin/sh", "-c"]
        self._env = host_env
        if sandbox == "bubblewrap" and "Bash" in self.tools:
            bwrap = find_bwrap()
            if bwrap is None:
                raise ValueError(NO_BWRAP)
            # inside, only the system's own shell is there (PATH may find another one)
            shell = ["/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh", "-c"]
            self._shell = bwrap_argv(bwrap, self.workspace, self.base, shell, network=sandbox_network)
            self._env = sandbox_env
        self._runners: dict[str, Callable[[Mapping[str, Any]], Awaitable[str]]] = {
            "Read": self.files.read,
            "Write": self.files.write,
            "Edit": self.files.edit,
            "Glob": self.files.glob,
            "Grep": self.files.grep,
            "LS": self.files.ls,
            "Bash": self._bash,
        }

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
        error = jsonschema.exceptions.best_match(VALIDATORS[name].iter_errors(dict(input)))
        if error is not None:
            where = "".join(f"[{p!r}]" for p in error.absolute_path)
            return f"invalid input for {name}{': ' + where if where else ''}: {error.message}", True
        try:
            return await self._runners[name](input), False
        except ToolFailure as exc:
            return str(exc), True
        except OSError as exc:  # what the tool did not foresee (permissions, odd files...)
            return f"{name} failed: {exc.strerror or exc}", True

    async def _bash(self, input: Mapping[str, Any]) -> str:
        timeout = float(input.get("timeout", self.bash_timeout))
        return await run_bash([*self._shell, input["command"]], self._env(), self.base, timeout)
