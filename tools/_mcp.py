"""MCP servers: their tools offered to the model as ``mcp__<server>__<tool>``.

Built on the official ``mcp`` SDK (``pip install 'sluiceway[mcp]'``), which is
written on anyio and so runs under trio as it is: its stdio transport starts the
server with ``anyio.open_process`` in a new session (a Ctrl-C at the terminal
does not reach it), and closes it in a shielded, bounded shutdown (stdin closed,
then the process tree terminated, then killed).

``open_mcp_tools`` starts every server in a nursery of its own, one task per
server that holds the SDK's transport and session open until the block is left:
the servers live as long as the step. A server that cannot start, dies, or does
not answer in time is a ``McpServerError`` naming it, with the tail of its
stderr; never a hang.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import IO, Any, Final, TextIO, cast

import attrs
import trio

from sluiceway._errors import StepError

from ._results import cap

__all__ = ("MCP_CALL_TIMEOUT", "MCP_START_TIMEOUT", "McpServerError", "McpTools", "open_mcp_tools")

#: Seconds a server has to start and list its tools.
MCP_START_TIMEOUT: Final = 30.0
#: Seconds an MCP tool call may take when the step sets no ``tool_timeout_ms``.
MCP_CALL_TIMEOUT: Final = 120.0
#: Characters of a server's stderr quoted in an error.
STDERR_TAIL: Final = 2000


class McpServerError(StepError):
    """An MCP server failed to start, died, or did not answer in time."""


@attrs.define(eq=False)
class _Server:
    name: str
    errlog: IO[str] | None
    session: Any = None
    tools: tuple[Any, ...] = ()
    done: trio.Event = attrs.field(factory=trio.Event)
    start_error: McpServerError | None = None

    def stderr_tail(self) -> str:
        if self.errlog is None:
            return ""
        try:
            self.errlog.flush()
            size = self.errlog.seek(0, os.SEEK_END)
            self.errlog.seek(max(0, size - STDERR_TAIL))
            text = self.errlog.read()
        except (OSError, ValueError):
            return ""
        return text.strip()

    def error(self, what: str, step: str | None) -> McpServerError:
        tail = self.stderr_tail()
        message = f"MCP server {self.name!r} {what}"
        if tail:
            message += f"; its stderr ends with:\n{tail}"
        return McpServerError(message, step=step or "?")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _describe(exc.exceptions[0])
    text = str(exc) or type(exc).__name__
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):  # MCPError(code, message, data)
        text = args[1]
    return text


class McpTools:
    """The tools of the running MCP servers, by their ``mcp__<server>__<tool>`` names."""

    def __init__(self, servers: Mapping[str, _Server], step: str | None, call_timeout: float) -> None:
        self._servers = dict(servers)
        self._step = step
        self._call_timeout = call_timeout
        self._tools: dict[str, tuple[_Server, Any]] = {
            f"mcp__{server.name}__{t.name}": (server, t) for server in servers.values() for t in server.tools
        }

    @property
    def names(self) -> tuple[str, ...]:
        """Every tool's name (``mcp__<server>__<tool>``)."""
        return tuple(self._tools)

    def server_of(self, name: str) -> str | None:
        """The server a tool name belongs to."""
        found = self._tools.get(name)
        return None if found is None else found[0].name

    def definitions(self) -> tuple[dict[str, Any], ...]:
        """The Messages API definitions of every tool."""
        return tuple(
            {
                "name": name,
                "description": tool.description or tool.title or tool.name,
                "input_schema": dict(tool.input_schema or {"type": "object"}),
            }
            for name, (_, tool) in self._tools.items()
        )

    async def run(self, name: str, input: Mapping[str, Any]) -> tuple[str, bool]:
        """Call tool *name* on its server; ``(content, is_error)`` as the server answered.

        Raises:
            McpServerError: the server died or did not answer within the call timeout.
        """
        server, tool = self._tools[name]
        try:
            with trio.fail_after(self._call_timeout):
                result = await server.session.call_tool(tool.name, dict(input))
        except trio.TooSlowError:
            raise server.error(f"did not answer {tool.name!r} within {self._call_timeout:g} s", self._step) from None
        except Exception as exc:
            raise server.error(f"failed during {tool.name!r}: {_describe(exc)}", self._step) from exc
        return _render(result), bool(getattr(result, "is_error", False))


def _render(result: Any) -> str:
    parts = []
    for item in getattr(result, "content", None) or ():
        text = getattr(item, "text", None)
        if isinstance(text, str):
            parts.append(text)
        else:
            parts.append(json.dumps(item.model_dump(mode="json", exclude_none=True), ensure_ascii=False))
    if not parts and getattr(result, "structured_content", None) is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return cap("\n".join(parts))


async def _serve(
    server: _Server, config: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Hold one server's transport and session open until ``server.done``."""
    from mcp.client.session import ClientSession

    async with _transport(server, config) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        server.session = session
        server.tools = tuple(listed.tools)
        task_status.started()
        await server.done.wait()


def _transport(server: _Server, config: Any) -> Any:
    url = getattr(config, "url", None)
    if url:
        from mcp.client.streamable_http import streamable_http_client

        return streamable_http_client(url)
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=config.command, args=list(config.args or ()), env=dict(config.env or {}) or None
    )
    errlog = cast(TextIO, server.errlog if server.errlog is not None else sys.stderr)
    return stdio_client(params, errlog=errlog)


@asynccontextmanager
async def open_mcp_tools(
    servers: Mapping[str, Any],
    *,
    step: str | None = None,
    start_timeout: float = MCP_START_TIMEOUT,
    call_timeout: float = MCP_CALL_TIMEOUT,
) -> AsyncIterator[McpTools]:
    """Start *servers* (name -> ``McpServer``: ``command``/``args``/``env``, or ``url``); yield their tools.

    The servers start concurrently, each in a task of this block's nursery, and
    are closed when the block is left (also on error or cancellation: the SDK
    stops a stdio server's process shielded and bounded).

    Raises:
        McpServerError: a server could not start (or list its tools) within
            *start_timeout*, with its stderr's tail.
        ModuleNotFoundError: the ``mcp`` SDK is not installed (``sluiceway[mcp]``).
    """
    try:
        import mcp  # noqa: F401
    except ModuleNotFoundError as exc:
        raise McpServerError(
            "claude_options.mcp_servers needs the MCP SDK: pip install 'sluiceway[mcp]'", step=step or ""
        ) from exc
    running: dict[str, _Server] = {}
    logs: list[IO[str]] = []
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            for name, config in servers.items():
                errlog = None
                if not getattr(config, "url", None):
                    errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
                    logs.append(errlog)
                running[name] = _Server(name, errlog)
            try:
                async with trio.open_nursery() as starting:
                    for name, config in servers.items():
                        starting.start_soon(_start, nursery, running[name], config, step, start_timeout)
                failed = [s.start_error for s in running.values() if s.start_error is not None]
                if failed:
                    raise failed[0]
                yield McpTools(running, step, call_timeout)
            except BaseException as exc:  # noqa: ASYNC103 - re-raised below, outside the nursery
                body_error = exc  # (so a start error, or the step's own, is not wrapped in a group)
            finally:
                for server in running.values():
                    server.done.set()
    finally:
        for log in logs:
            log.close()
    if body_error is not None:
        raise body_error


async def _start(nursery: trio.Nursery, server: _Server, config: Any, step: str | None, start_timeout: float) -> None:
    """Start one server; a failure is kept in ``server.start_error`` (the first is raised)."""
    try:
        with trio.fail_after(start_timeout):
            await nursery.start(_serve, server, config)
    except trio.TooSlowError:
        server.start_error = server.error(f"did not start within {start_timeout:g} s", step)
    except Exception as exc:  # the SDK's errors, OSError (no such program), groups of them
        server.start_error = server.error(f"failed to start: {_describe(exc)}", step)
        server.start_error.__cause__ = exc
