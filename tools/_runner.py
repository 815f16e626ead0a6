"""A step's tools in one ``ToolRunner``: built-in, function and MCP tools, behind the permission hook.

``StepTools`` offers the built-in ``Toolbox``'s tools, the step's function
tools and its MCP servers' tools under one set of names, asks ``can_use_tool``
before every call, and answers the engine's ``timeout_for`` (the per-tool
timeout the engine applies around a call).

A function tool's exception is an error result the model sees (so is invalid
input, checked before the call). An MCP server that fails is a step error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._function import FunctionTool, ToolInputError
from ._mcp import McpTools
from ._permission import Allow, CanUseTool, Deny, ToolContext, ask_permission
from ._toolbox import Toolbox

__all__ = ("StepTools", "offered_names")


def offered_names(
    declared: Sequence[str], allowed: Sequence[str] | None, disallowed: Sequence[str] | None
) -> tuple[str, ...]:
    """Which function and MCP tools of *declared* are offered.

    All of them, unless *allowed* names any of them (or an ``mcp__<server>``
    prefix, meaning all of that server's tools): then only those. *disallowed*
    removes names (and ``mcp__<server>`` prefixes) either way.
    """

    def matches(name: str, names: Sequence[str]) -> bool:
        return any(name == n or (n.startswith("mcp__") and name.startswith(n + "__")) for n in names)

    wanted = [n for n in (allowed or ()) if n in declared or any(d.startswith(n + "__") for d in declared)]
    offered = [n for n in declared if not wanted or matches(n, wanted)]
    return tuple(n for n in offered if not matches(n, disallowed or ()))


class StepTools:
    """Every tool a step offers, behind the permission hook. Implements ``ToolRunner``.

    Args:
        step: The step's path (for the hook's context and errors).
        toolbox: The built-in tools, or ``None``.
        functions: Function tools.
        mcp: The running MCP servers' tools, or ``None``.
        allowed: ``allowed_tools`` (limits function and MCP tools when it names any).
        disallowed: ``disallowed_tools``.
        can_use_tool: The permission hook, or ``None`` (every call allowed).
        tool_timeout: Seconds a function tool call may take unless it sets its own.
        extra_definitions: Definitions offered that no tool here runs (the output tool).

    Raises:
        ValueError: two tools have one name.
    """

    def __init__(
        self,
        *,
        step: str,
        toolbox: Toolbox | None = None,
        functions: Sequence[FunctionTool] = (),
        mcp: McpTools | None = None,
        allowed: Sequence[str] | None = None,
        disallowed: Sequence[str] | None = None,
        can_use_tool: CanUseTool | None = None,
        tool_timeout: float | None = None,
        extra_definitions: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.step = step
        self.toolbox = toolbox
        self.can_use_tool = can_use_tool
        self.tool_timeout = tool_timeout
        builtin = toolbox.tools if toolbox is not None else ()
        by_name: dict[str, FunctionTool] = {}
        for fn in functions:
            if fn.name in by_name or fn.name in builtin:
                raise ValueError(f"two tools are named {fn.name!r}")
            by_name[fn.name] = fn
        declared = [*by_name, *(mcp.names if mcp is not None else ())]
        offered = set(offered_names(declared, allowed, disallowed))
        self.functions = {n: f for n, f in by_name.items() if n in offered}
        """The function tools offered, by name."""
        self.mcp = mcp
        self.mcp_names = tuple(n for n in (mcp.names if mcp is not None else ()) if n in offered)
        """The MCP tools offered."""
        self.extra_definitions = tuple(extra_definitions)

    @property
    def names(self) -> tuple[str, ...]:
        """Every tool offered, built-in first."""
        builtin = self.toolbox.tools if self.toolbox is not None else ()
        return (*builtin, *self.functions, *self.mcp_names)

    def definitions(self) -> tuple[dict[str, Any], ...]:
        """The Messages API definitions of every tool offered."""
        out = list(self.toolbox.definitions()) if self.toolbox is not None else []
        out += [f.definition() for f in self.functions.values()]
        if self.mcp is not None:
            wanted = set(self.mcp_names)
            out += [d for d in self.mcp.definitions() if d["name"] in wanted]
        return (*out, *self.extra_definitions)

    def timeout_for(self, name: str) -> float | None:
        """Seconds a call of *name* may take before the engine cancels it (an error result).

        Function tools: their own ``timeout``, else the step's. MCP tools time out
        inside ``McpTools`` (a step error: the server is stuck); built-in tools
        have their own limits (``Bash``'s timeout).
        """
        fn = self.functions.get(name)
        if fn is None:
            return None
        return fn.timeout if fn.timeout is not None else self.tool_timeout

    def _context(self, name: str) -> ToolContext:
        if name in self.functions:
            return ToolContext(step=self.step, kind="function")
        if name in self.mcp_names and self.mcp is not None:
            return ToolContext(step=self.step, kind="mcp", server=self.mcp.server_of(name))
        return ToolContext(step=self.step, kind="builtin")

    async def run(self, name: str, input: Mapping[str, Any]) -> tuple[str, bool]:
        """Ask the hook, then run tool *name*; ``(content, is_error)``.

        A deny is an error result with the hook's reason (the tool never runs).

        Raises:
            McpServerError: an MCP server failed (a step error).
            Exception: what the permission hook raised.
        """
        if name not in self.names:
            return f"unknown tool: {name!r}", True
        if self.can_use_tool is not None:
            answer = await ask_permission(self.can_use_tool, name, input, self._context(name))
            if isinstance(answer, Deny):
                return f"permission denied: {answer.reason}", True
            assert isinstance(answer, Allow)
            if answer.updated_input is not None:
                input = answer.updated_input
        fn = self.functions.get(name)
        if fn is not None:
            try:
                return await fn.call(input), False
            except ToolInputError as exc:
                return f"invalid input for {name}: {exc}", True
            except Exception as exc:  # the tool's own failure: the model sees it and may recover
                return f"{name} failed: {type(exc).__name__}: {exc}", True
        if name in self.mcp_names and self.mcp is not None:
            return await self.mcp.run(name, input)
        assert self.toolbox is not None
        return await self.toolbox.run(name, input)
