"""The ``console`` handler: a header, live text, tool panels and statistics, with rich."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar, TextIO

import attrs
from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..engine import (
    TERMINAL_EVENTS,
    Cancelled,
    Delta,
    Done,
    Event,
    Failed,
    HandlerContext,
    HandlerPolicy,
    Message,
    Response,
    Retrying,
    StepStarted,
    ThinkingDelta,
    ToolResult,
    ToolUse,
)
from ._base import (
    LineTracker,
    SyncHandler,
    completion_text,
    failure_text,
    retry_text,
    stdout_of,
    substep_prefix,
)

__all__ = ("ConsoleHandler",)

#: Tool results longer than this many lines are cut in their panel.
TOOL_RESULT_MAX_LINES = 20


def _make_console(stream: TextIO, color: bool | None) -> Console:
    isatty = getattr(stream, "isatty", None)
    tty = bool(isatty and isatty())
    options: dict[str, Any]
    if color is None:  # auto: rich turns colors off off-TTY and honours NO_COLOR
        options = {"color_system": "auto", "no_color": None}
    elif color:  # forced on, even into a pipe and over NO_COLOR: the user asked
        options = {"color_system": "auto" if tty else "standard", "no_color": False}
    else:
        options = {"color_system": None, "no_color": True}
    return Console(
        file=stream,
        force_terminal=None,
        force_jupyter=False,
        highlight=False,
        emoji=False,
        markup=False,
        **options,
    )


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _fmt_cost(cost: float | None) -> str:
    if cost is None:
        return "–"
    return f"${cost:.5f}" if cost < 1 else f"${cost:.2f}"  # cents hide small calls


def _stats_rows(response: Response) -> list[tuple[str, str]]:
    m, u = response.metrics, response.usage
    tokens = f"{u.input_tokens} in / {u.output_tokens} out"
    if u.cache_read_input_tokens or u.cache_creation_input_tokens:
        tokens += f" (cache {u.cache_read_input_tokens} read, {u.cache_creation_input_tokens} written)"
    rate = "–" if m.output_tokens_per_second is None else f"{m.output_tokens_per_second:.1f}"
    return [
        ("messages", str(m.message_count)),
        ("tokens", tokens),
        ("first token", _fmt_seconds(m.time_to_first_token)),
        ("tokens/s", rate),
        ("cost", _fmt_cost(response.cost_usd)),
        ("duration", _fmt_seconds(m.duration)),
    ]


class ConsoleHandler(SyncHandler):
    """Show the stream for a person at a terminal.

    A header (step, provider, model), the text as it arrives, tool calls and
    results in panels, thinking when asked, and at the end the statistics:
    messages, tokens in and out, time to first token, tokens/s, cost, duration.
    Colors follow the stream: off when it is not a TTY or ``NO_COLOR`` is set,
    unless ``color`` forces them. On a TTY a ``claude_batch`` step also shows a
    progress bar as its tasks finish.
    """

    policy: ClassVar[HandlerPolicy] = "coalesce"
    """Consecutive deltas may arrive merged: the display is the same."""

    @attrs.frozen(kw_only=True)
    class Options:
        """``stream_handler_opts`` of the ``console`` handler."""

        show_header: bool = True
        """Show a header when the step (or a sub-step) starts."""
        show_stats: bool = True
        """Show the statistics when a step completes."""
        show_tool_use: bool = True
        """Show a panel per tool call, with its input."""
        show_tool_results: bool = True
        """Show a panel per tool result."""
        show_thinking: bool = False
        """Show thinking text, dimmed."""
        color: bool | None = None
        """``None``: automatic (TTY and no ``NO_COLOR``); ``True``/``False``: forced."""

    def __init__(self, options: ConsoleHandler.Options, context: HandlerContext) -> None:
        self.options = options
        self.context = context
        self._console: Console | None = None
        self._lines = LineTracker()
        self._substep = re.compile(re.escape(context.step) + r"\[\d+\]")
        self._tasks_started: set[str] = set()
        self._tasks_ended: set[str] = set()
        self._closed = False

    def _get_console(self) -> Console:
        stream = stdout_of(self.context)
        if self._console is None or self._console.file is not stream:
            self._console = _make_console(stream, self.options.color)
        return self._console

    def _handle_events(self, events: Sequence[Event]) -> None:
        """Show *events*; rich buffers the batch into one write, then the stream is flushed.

        Blocks only in the stream's write; no checkpoint, so a cancellation takes
        effect in the engine, between batches.
        """
        console = self._get_console()
        with console:  # rich's buffer: one write for the batch
            for event in events:
                self._render(console, event)
        console.file.flush()

    async def aclose(self) -> None:
        """End an open line and flush. Idempotent; the stream itself stays open (not ours)."""
        if self._closed:
            return
        self._closed = True
        console = self._get_console()
        self._end_line(console)
        console.file.flush()

    # -- rendering ------------------------------------------------------------

    def _end_line(self, console: Console) -> None:
        if not self._lines.at_line_start:
            console.out("", end="\n")
        self._lines.at_line_start = True
        self._lines.open_key = None

    def _line(self, console: Console, renderable: RenderableType | str, style: str = "") -> None:
        self._end_line(console)
        if isinstance(renderable, str):
            console.out(renderable, style=style or None, highlight=False)
        else:
            console.print(renderable)

    def _stream(self, console: Console, event: Event, kind: str, text: str, style: str) -> None:
        lines = self._lines
        if lines.needs_header(event.step, kind):
            self._end_line(console)
            header = substep_prefix(self.context, event.step)
            if kind == "thinking":
                header += "thinking: "
            if header:
                console.out(header, style="bold cyan" if kind == "text" else "dim", end="")
                lines.at_line_start = False
            lines.open_key = (event.step, kind)
        if text:
            console.out(text, style=style or None, end="", highlight=False)
            lines.at_line_start = text.endswith("\n")

    def _render(self, console: Console, event: Event) -> None:
        opts = self.options
        prefix = substep_prefix(self.context, event.step)
        if isinstance(event, Delta):
            self._stream(console, event, "text", event.content, "")
        elif isinstance(event, ThinkingDelta):
            if opts.show_thinking:
                self._stream(console, event, "thinking", event.content, "dim italic")
        elif isinstance(event, Message):
            if self._lines.open_key is not None and self._lines.open_key[0] == event.step:
                self._end_line(console)
        elif isinstance(event, StepStarted):
            if self._substep.fullmatch(event.step):
                self._tasks_started.add(event.step)
            if opts.show_header:
                self._header(console, event)
        elif isinstance(event, ToolUse):
            if opts.show_tool_use:
                body = json.dumps(event.input, indent=2, ensure_ascii=False, default=str)
                self._line(
                    console,
                    Panel(
                        Text(body),
                        title=f"{prefix}tool use: {event.name}",
                        title_align="left",
                        border_style="cyan",
                        expand=False,
                    ),
                )
        elif isinstance(event, ToolResult):
            if opts.show_tool_results:
                lines = event.content.rstrip("\n").split("\n")
                if len(lines) > TOOL_RESULT_MAX_LINES:
                    more = len(lines) - TOOL_RESULT_MAX_LINES
                    lines = [*lines[:TOOL_RESULT_MAX_LINES], f"… ({more} more lines)"]
                label = "tool error" if event.is_error else "tool result"
                self._line(
                    console,
                    Panel(
                        Text("\n".join(lines)),
                        title=f"{prefix}{label}: {event.name}",
                        title_align="left",
                        border_style="red" if event.is_error else "green",
                        expand=False,
                    ),
                )
        elif isinstance(event, Retrying):
            self._line(console, prefix + retry_text(event), "yellow")
        elif isinstance(event, Done):
            self._done(console, event, prefix)
        elif isinstance(event, Failed):
            self._line(console, prefix + failure_text(event), "bold red")
        elif isinstance(event, Cancelled):
            self._line(console, prefix + "✗ Stream cancelled", "yellow")
        if isinstance(event, TERMINAL_EVENTS) and event.step in self._tasks_started:
            self._tasks_ended.add(event.step)
            if console.is_terminal:
                self._progress(console)

    def _header(self, console: Console, event: StepStarted) -> None:
        model = event.model or "default model"
        if event.step == self.context.step:
            self._end_line(console)
            console.rule(
                Text(f"▶ {event.step} · {event.provider} · {model}", style="bold"),
                align="left",
                style="blue",
            )
        else:
            self._line(console, f"{substep_prefix(self.context, event.step)}▶ started · {event.provider} · {model}", "dim")

    def _done(self, console: Console, event: Done, prefix: str) -> None:
        response = event.response
        if not self.options.show_stats:
            self._line(console, prefix + completion_text(response), "green")
        elif event.step == self.context.step:
            table = Table.grid(padding=(0, 2))
            table.add_column(style="bold")
            table.add_column()
            for name, value in _stats_rows(response):
                table.add_row(name, value)
            self._line(
                console,
                Panel(
                    table,
                    title=f"✓ {event.step} completed",
                    title_align="left",
                    border_style="green",
                    expand=False,
                ),
            )
        else:
            stats = " · ".join(f"{name} {value}" for name, value in _stats_rows(response))
            self._line(console, f"{prefix}✓ completed · {stats}", "green")

    def _progress(self, console: Console) -> None:
        total, done = len(self._tasks_started), len(self._tasks_ended)
        row = Table.grid(padding=(0, 1))
        row.add_row(
            Text(self.context.step, style="bold"),
            ProgressBar(total=total, completed=done, width=30),
            Text(f"{done}/{total} tasks done"),
        )
        self._line(console, row)
