"""Tool-based structured output in the step: ``PartialOutput`` events as the output tool's input forms.

The step actor hands each piece of the output tool's input to an
``OutputStream``, which parses it with the ``OutputTool``'s partial parser and
sends a ``PartialOutput`` when the value changed (at most one per ``debounce``
seconds); the final, validated value is sent by the tool loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._events import PartialOutput
from ._protocols import OutputTool

__all__ = ("OutputStream",)


class OutputStream:
    """The partial values of one attempt's output tool calls, sent as ``PartialOutput``."""

    def __init__(self, output: OutputTool, emit: Callable[..., Awaitable[Any]]) -> None:
        self.output = output
        self.tool_name = output.tool_name
        self._emit = emit
        self._parsers: dict[str, Any] = {}
        self._last_at: float | None = None

    async def feed(self, tool_use_id: str, piece: str) -> None:
        """Fold *piece* into the call's input; send a ``PartialOutput`` when its value changed."""
        parser = self._parsers.get(tool_use_id)
        if parser is None:
            parser = self._parsers[tool_use_id] = self.output.partial_parser()
        value = parser(piece)
        if value is None:
            return
        debounce = self.output.debounce
        if debounce:
            now = trio.current_time()
            if self._last_at is not None and now - self._last_at < debounce:
                return  # the final event carries the whole value anyway
            self._last_at = now
        await self._emit(PartialOutput, value=value, complete=False, tool_use_id=tool_use_id)
