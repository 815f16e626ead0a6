"""The ``simple`` handler: timestamped lines, with the assistant's text streaming onto them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs

from ..engine import (
    Cancelled,
    Delta,
    Done,
    Event,
    Failed,
    HandlerContext,
    HandlerPolicy,
    Message,
    Retrying,
    ToolResult,
    ToolUse,
)
from ._base import (
    LineTracker,
    SyncHandler,
    clock,
    completion_text,
    failure_text,
    first_line,
    retry_text,
    stdout_of,
    substep_prefix,
    terminal_text,
)

__all__ = ("SimpleHandler",)


class SimpleHandler(SyncHandler):
    """Print clean, timestamped lines; the assistant's text streams as it arrives.

    ::

        [12:34:56] ASSISTANT: I'll analyze this code for you...
        [12:34:57] TOOL USE: Read
        [12:34:58] TOOL RESULT: File contents loaded
        ✓ Stream completed: 3 messages in 2140 ms

    Events of a sub-step (``batch[3]``, ``par.branch_a``) get the sub-step after
    the timestamp: ``[12:00:01] [batch[3]] ASSISTANT: ...``.
    """

    policy: ClassVar[HandlerPolicy] = "coalesce"
    """Consecutive deltas may arrive merged: the display is the same."""

    @attrs.frozen(kw_only=True)
    class Options:
        """``stream_handler_opts`` of the ``simple`` handler."""

        show_timestamps: bool = True
        """Begin lines with ``[HH:MM:SS]`` (local time)."""
        show_tool_use: bool = True
        """Print ``TOOL USE: <name>`` lines."""
        show_tool_results: bool = True
        """Print ``TOOL RESULT: <first line>`` lines."""

    def __init__(self, options: SimpleHandler.Options, context: HandlerContext) -> None:
        self.options = options
        self.context = context
        self._lines = LineTracker()
        self._streamed: set[str] = set()  # steps whose current message showed deltas
        self._closed = False

    def _handle_events(self, events: Sequence[Event]) -> None:
        """Print *events* with one write and one flush, so the text appears live.

        Blocks only in the stream's write (a full pipe or slow terminal blocks the
        step: policy ``coalesce`` then merges text deltas while it waits). Has no
        checkpoint: a cancellation takes effect in the engine, between batches.
        """
        out: list[str] = []
        for event in events:
            self._render(event, out)
        if out:
            stream = stdout_of(self.context)
            stream.write(terminal_text("".join(out)))
            stream.flush()

    async def aclose(self) -> None:
        """End an open line and flush. Idempotent; the stream itself stays open (not ours)."""
        if self._closed:
            return
        self._closed = True
        out: list[str] = []
        self._lines.end_line(out)
        stream = stdout_of(self.context)
        if out:
            stream.write("".join(out))
        stream.flush()

    def _head(self, event: Event) -> str:
        stamp = clock(self.context, event.at) + " " if self.options.show_timestamps else ""
        return stamp + substep_prefix(self.context, event.step)

    def _render(self, event: Event, out: list[str]) -> None:
        lines = self._lines
        if isinstance(event, Delta):
            lines.stream(event.step, "text", self._head(event) + "ASSISTANT: ", event.content, out)
            self._streamed.add(event.step)
        elif isinstance(event, Message):
            if event.role == "assistant" and event.step not in self._streamed and event.text:
                # A message whose deltas we never saw: show it whole.
                lines.line(self._head(event) + "ASSISTANT: " + event.text, out)
            lines.end_line_of(event.step, out)
            self._streamed.discard(event.step)
        elif isinstance(event, ToolUse):
            if self.options.show_tool_use:
                lines.line(f"{self._head(event)}TOOL USE: {event.name}", out)
        elif isinstance(event, ToolResult):
            if self.options.show_tool_results:
                label = "TOOL RESULT (error)" if event.is_error else "TOOL RESULT"
                lines.line(f"{self._head(event)}{label}: {first_line(event.content)}", out)
        elif isinstance(event, Retrying):
            self._streamed.discard(event.step)
            lines.line(substep_prefix(self.context, event.step) + retry_text(event), out)
        elif isinstance(event, Done):
            self._streamed.discard(event.step)
            lines.line(substep_prefix(self.context, event.step) + completion_text(event.response), out)
        elif isinstance(event, Failed):
            self._streamed.discard(event.step)
            lines.line(substep_prefix(self.context, event.step) + failure_text(event), out)
        elif isinstance(event, Cancelled):
            self._streamed.discard(event.step)
            lines.line(substep_prefix(self.context, event.step) + "✗ Stream cancelled", out)
        # StepStarted, run events, thinking and tool-input deltas: not shown.
