"""The permission hook: ``can_use_tool(tool_name, input, context)`` runs before every tool call.

It answers ``Allow()`` (run the call), ``Allow(updated_input)`` (run it with
this input instead) or ``Deny(reason)`` (do not run it: the model gets an error
``tool_result`` with the reason). ``True`` and ``False`` are accepted as a
plain allow or deny. It may be sync or async; it runs before built-in,
function and MCP tools alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

__all__ = ("Allow", "CanUseTool", "Deny", "ToolContext", "allow", "ask_permission", "deny")


@attrs.frozen
class Allow:
    """Run the call; with *updated_input*, run it with that input instead."""

    updated_input: Mapping[str, Any] | None = None
    """The input the tool runs with; ``None``: the model's own."""


@attrs.frozen
class Deny:
    """Do not run the call; the model is told *reason*."""

    reason: str = "denied by the permission hook"
    """Why, in words the model reads."""


def allow(updated_input: Mapping[str, Any] | None = None) -> Allow:
    """``Allow(updated_input)``."""
    return Allow(updated_input)


def deny(reason: str = "denied by the permission hook") -> Deny:
    """``Deny(reason)``."""
    return Deny(reason)


@attrs.frozen(kw_only=True)
class ToolContext:
    """What the permission hook knows about a call besides its name and input."""

    step: str
    """The path of the step that makes the call."""
    kind: str
    """``builtin``, ``function`` or ``mcp``."""
    server: str | None = None
    """The MCP server's name, for an MCP tool."""


CanUseTool = Callable[[str, Mapping[str, Any], ToolContext], "Allow | Deny | bool | Awaitable[Allow | Deny | bool]"]
"""``can_use_tool(tool_name, input, context) -> Allow | Deny | bool`` (sync or async)."""


async def ask_permission(
    hook: CanUseTool, name: str, input: Mapping[str, Any], context: ToolContext
) -> Allow | Deny:
    """Ask *hook* about one call; its answer, normalized.

    Raises:
        TypeError: the hook answered something else than ``Allow``, ``Deny`` or a bool.
        Exception: what the hook raised (it fails the step: a broken policy must not allow).
    """
    answer = hook(name, input, context)
    if inspect.isawaitable(answer):
        answer = await answer
    if answer is True:
        return Allow()
    if answer is False:
        return Deny()
    if isinstance(answer, Allow | Deny):
        return answer
    raise TypeError(f"can_use_tool must return allow(...) or deny(...), got {answer!r}")
