"""The ``console`` handler: a header, live text, tool panels and statistics, with rich.

Off a TTY the output is plain and append-only. On a TTY it adds what changes
in place (``LiveRegion``): a spinner with the elapsed time while the step waits
for the model, and for a composite step (``claude_batch``, ``parallel_claude``)
a progress bar with one live line per running sub-step, instead of one line per
delta. Either way the terminal is written a bounded number of times: streamed
text is plain string work (rich renders only headers, panels and statistics),
and a composite step's output is written at most ``REFRESH_PER_SECOND`` times a
second, however many deltas its sub-steps stream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar, Final, TextIO

import attrs
import trio
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.spinner import Spinner
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
    terminal_text,
)
from ._live import FRAME_INTERVAL, LiveRegion, spinner_frame

__all__ = ("ConsoleHandler",)

#: Tool results longer than this many lines are cut in their panel.
TOOL_RESULT_MAX_LINES = 20
#: Running sub-steps shown as live lines, at most; the others are counted on one line.
MAX_LIVE_ROWS: Final = 12
#: Characters of a running sub-step's latest text kept for its live line.
LIVE_TAIL_CHARS: Final = 240
#: Step types whose sub-steps get the live progress view on a TTY.
COMPOSITE_TYPES: Final = frozenset({"claude_batch", "parallel_claude"})


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def position_text(context: HandlerContext) -> str:
    """``" (step 2 of 5)"`` when the context knows the step's place in the run, else ``""``."""
    if context.position is None:
        return ""
    index, total = context.position
    return f" (step {index} of {total})"


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


class _Row:
    """A running sub-step's live line."""

    __slots__ = ("attempt", "started", "tail")

    def __init__(self, started: float) -> None:
        self.started = started
        self.tail = ""
        self.attempt = 1


class _Board:
    """A composite step's progress: counts and the running sub-steps' latest text."""

    def __init__(self, step: str, total: int | None, started: float) -> None:
        self.step = step
        self.total = total
        self.started = started
        self.running: dict[str, _Row] = {}
        self.seen: set[str] = set()
        self.done = 0
        self.failed = 0
        self.cancelled = 0
        self.spinner = Spinner("dots", style="cyan")

    def start(self, step: str) -> None:
        self.seen.add(step)
        self.running[step] = _Row(trio.current_time())

    def end(self, event: Event) -> None:
        if self.running.pop(event.step, None) is None and event.step in self.seen:
            return  # already ended (a second terminal cannot happen; be safe)
        if isinstance(event, Done):
            self.done += 1
        elif isinstance(event, Failed):
            self.failed += 1
        else:
            self.cancelled += 1

    def text(self, event: Delta) -> None:
        row = self.running.get(event.step)
        if row is None:
            return
        if event.attempt != row.attempt:  # a retry: the superseded attempt's text is gone
            row.attempt, row.tail = event.attempt, ""
        tail = row.tail + event.content
        row.tail = tail[-LIVE_TAIL_CHARS:] if len(tail) > LIVE_TAIL_CHARS else tail

    def render(self, width: int, plain: bool) -> RenderableType:
        """The bar and the live lines, as Text only (a table's layout costs more than a frame should)."""
        now = trio.current_time()
        ended = self.done + self.failed + self.cancelled
        total = max(self.total or 0, len(self.seen))
        counts = [f"{ended}/{total} tasks done"]
        if self.running:
            counts.append(f"{len(self.running)} running")
        if self.failed:
            counts.append(f"{self.failed} failed")
        if self.cancelled:
            counts.append(f"{self.cancelled} cancelled")
        counts.append(f"{now - self.started:.1f} s")
        lines = [
            Text.assemble((self.step, "bold"), " ", _bar(ended, total or 1, plain), " ", " · ".join(counts))
        ]
        shown = list(self.running.items())[:MAX_LIVE_ROWS]
        frame = spinner_frame(self.spinner, now)
        name_width = max((len(step) for step, _ in shown), default=0)
        for step, row in shown:
            elapsed = f"{now - row.started:.1f} s"
            room = max(width - name_width - len(elapsed) - 5, 10)
            latest = " ".join(row.tail[-(room + 40):].split())  # one line: the latest words
            if len(latest) > room:
                latest = "…" + latest[-(room - 1):]
            lines.append(
                Text.assemble(
                    frame,
                    " ",
                    (step.ljust(name_width), "bold cyan"),
                    " ",
                    (elapsed, "dim"),
                    " ",
                    (latest, "") if latest else ("waiting for the first token", "dim"),
                    no_wrap=True,
                    overflow="ellipsis",
                )
            )
        if len(self.running) > len(shown):
            lines.append(Text(f"  … and {len(self.running) - len(shown)} more running", style="dim"))
        return Group(*lines)


#: Characters of a composite step's progress bar.
BAR_WIDTH: Final = 30


def _bar(completed: int, total: int, plain: bool) -> Text:
    """A progress bar as text, in rich's ``ProgressBar`` look (without colors: the rest blank)."""
    halves = min(BAR_WIDTH * 2, round(BAR_WIDTH * 2 * completed / total))
    full, half = divmod(halves, 2)
    done = "━" * full + ("╸" if half else "")
    rest = BAR_WIDTH - full - half
    if plain:
        return Text(done + " " * rest)
    style = "bar.finished" if completed >= total else "bar.complete"
    return Text.assemble((done, style), ("━" * rest, "bar.back"))


class ConsoleHandler(SyncHandler):
    """Show the stream for a person at a terminal.

    A header (step, its place in the run, provider, model), the text as it
    arrives, tool calls and results in panels, thinking when asked, and at the
    end the statistics: messages, tokens in and out, time to first token,
    tokens/s, cost, duration. Colors follow the stream: off when it is not a
    TTY or ``NO_COLOR`` is set, unless ``color`` forces them.

    On a TTY, a spinner with the elapsed time shows while the step waits for
    the model, and a composite step shows a progress bar with one live line per
    running sub-step (its latest words), redrawn at a bounded rate; each
    sub-step's completion stays above it as one line. Off a TTY, sub-steps'
    text is interleaved on prefixed lines (``[batch[3]] ...``), written at a
    bounded rate too.
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

    def __init__(
        self, options: ConsoleHandler.Options, context: HandlerContext, *, failure_cause: bool = True
    ) -> None:
        self.options = options
        self.context = context
        self._failure_cause = failure_cause  # False: the step's own failure line leaves its cause out
        self._console: Console | None = None
        self._lines = LineTracker()
        self._out: list[str] = []
        self._styles: dict[str, tuple[str, str]] = {}
        self._live: LiveRegion | None = None
        self._board: _Board | None = None
        self._waiting: tuple[float, str] | None = None  # (since, what) while the spinner shows
        self._spinner = Spinner("dots", style="cyan")
        self._composite = False  # sub-step events seen: plain output is written at a bounded rate
        self._next_write = float("-inf")
        self._closed = False

    def _get_console(self) -> Console:
        stream = stdout_of(self.context)
        if self._console is None or self._console.file is not stream:
            self._console = _make_console(stream, self.options.color)
            self._styles.clear()
        return self._console

    def _handle_events(self, events: Sequence[Event]) -> None:
        """Show *events*: state changes and string work, then at most one write and one redraw.

        Blocks only in the stream's write; no checkpoint, so a cancellation takes
        effect in the engine, between batches.
        """
        console = self._get_console()
        for event in events:
            self._render(console, event)
        self._write(console)
        if self._live is not None:
            self._live.refresh()

    async def aclose(self) -> None:
        """Stop the live region, end an open line and flush. Idempotent; the stream stays open."""
        if self._closed:
            return
        self._closed = True
        console = self._get_console()
        self._stop_live()
        self._end_line()
        self._write(console, force=True)
        console.file.flush()

    # -- output ---------------------------------------------------------------

    def _write(self, console: Console, *, force: bool = False) -> None:
        """Write what ``_out`` holds; a composite step's only when due (bounded rate)."""
        if not self._out:
            return
        if self._composite and not force and _in_trio():
            now = trio.current_time()
            if now < self._next_write:
                return
            self._next_write = now + FRAME_INTERVAL
        text = "".join(self._out)
        self._out.clear()
        console.file.write(text)
        console.file.flush()

    def _styled(self, console: Console, text: str, style: str) -> str:
        """*text* wrapped in *style*'s escape codes (none without colors); rendered once per style."""
        if not style or console.no_color or console.color_system is None:
            return text
        codes = self._styles.get(style)
        if codes is None:
            with console.capture() as capture:
                console.out("\x00", style=style, end="", highlight=False)
            before, _, after = capture.get().partition("\x00")
            codes = self._styles[style] = (before, after)
        return codes[0] + text + codes[1]

    def _end_line(self) -> None:
        self._lines.end_line(self._out)

    def _line(self, console: Console, renderable: RenderableType | str, style: str = "") -> None:
        """A whole line or block: above the live region when there is one, else into ``_out``."""
        if self._board is not None and self._live is not None:
            self._live.print_above(Text(renderable, style=style) if isinstance(renderable, str) else renderable)
            return
        self._end_line()
        if isinstance(renderable, str):
            self._out.append(self._styled(console, terminal_text(renderable), style) + "\n")
            return
        with console.capture() as capture:
            console.print(renderable)
        self._out.append(capture.get())

    def _stream(self, console: Console, event: Event, kind: str, text: str, style: str) -> None:
        lines = self._lines
        if lines.needs_header(event.step, kind):
            self._end_line()
            header = substep_prefix(self.context, event.step)
            if kind == "thinking":
                header += "thinking: "
            if header:
                self._out.append(self._styled(console, header, "bold cyan" if kind == "text" else "dim"))
                lines.at_line_start = False
            lines.open_key = (event.step, kind)
        if text:
            self._out.append(self._styled(console, terminal_text(text), style))
            lines.at_line_start = text.endswith("\n")

    # -- the live region (TTY) ------------------------------------------------

    def _live_ok(self, console: Console) -> bool:
        return console.is_terminal and not self._closed and _in_trio()

    def _start_spinner(self, console: Console, what: str) -> None:
        """Show a transient spinner with the elapsed time until the model's next output."""
        if self._live is not None or not self._live_ok(console):
            return
        self._end_line()
        self._write(console, force=True)
        self._waiting = (trio.current_time(), what)
        self._live = LiveRegion(console, self._render_spinner, transient=True, tick=self._tick)

    def _render_spinner(self) -> RenderableType:
        since, what = self._waiting or (trio.current_time(), "")
        elapsed = trio.current_time() - since
        return Text.assemble(
            spinner_frame(self._spinner, trio.current_time()), " ", (f"{what} · {elapsed:.1f} s", "dim")
        )

    def _start_board(self, console: Console) -> None:
        """Show the composite step's progress bar and live lines (TTY)."""
        if self._live is not None or not self._live_ok(console):
            return
        self._end_line()
        self._write(console, force=True)
        self._board = _Board(self.context.step, self.context.substeps, trio.current_time())
        self._live = LiveRegion(console, self._render_board, transient=False, tick=self._tick)

    def _render_board(self) -> RenderableType:
        assert self._board is not None
        console = self._get_console()
        return self._board.render(console.width, plain=console.no_color or console.color_system is None)

    def _tick(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def _stop_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()
        self._waiting = None
        self._board = None

    # -- rendering ------------------------------------------------------------

    def _render(self, console: Console, event: Event) -> None:
        own = event.step == self.context.step
        if self._waiting is not None and not isinstance(event, StepStarted):
            self._stop_live()  # the model answered (or the step ended): the spinner goes
        if not own and not self._composite:
            self._composite = True
            if self._live is None:
                self._start_board(console)
        if self._board is not None and not own:
            self._render_substep(console, event)
            return
        if own and isinstance(event, TERMINAL_EVENTS):
            self._stop_live()
        self._render_plain(console, event)
        if own and self._live is None:
            if isinstance(event, StepStarted):
                if event.step_type in COMPOSITE_TYPES:
                    self._start_board(console)
                else:
                    self._start_spinner(console, "waiting for the first token")
            elif isinstance(event, ToolResult):
                self._start_spinner(console, "waiting for the model")

    def _render_substep(self, console: Console, event: Event) -> None:
        """A sub-step's event in the live view: its line changes; what must stay goes above."""
        board = self._board
        assert board is not None
        if isinstance(event, Delta):
            board.text(event)
        elif isinstance(event, StepStarted):
            board.start(event.step)
        elif isinstance(event, TERMINAL_EVENTS):
            board.end(event)
            self._render_plain(console, event)
        elif isinstance(event, Retrying):
            row = board.running.get(event.step)
            if row is not None:
                row.tail = ""
            self._render_plain(console, event)
        elif isinstance(event, ToolUse | ToolResult):
            self._render_plain(console, event)

    def _render_plain(self, console: Console, event: Event) -> None:
        opts = self.options
        prefix = substep_prefix(self.context, event.step)
        if isinstance(event, Delta):
            self._stream(console, event, "text", event.content, "")
        elif isinstance(event, ThinkingDelta):
            if opts.show_thinking:
                self._stream(console, event, "thinking", event.content, "dim italic")
        elif isinstance(event, Message):
            if self._lines.open_key is not None and self._lines.open_key[0] == event.step:
                self._end_line()
        elif isinstance(event, StepStarted):
            if opts.show_header:
                self._header(console, event)
        elif isinstance(event, ToolUse):
            if opts.show_tool_use:
                body = json.dumps(event.input, indent=2, ensure_ascii=False, default=str)
                self._line(
                    console,
                    Panel(
                        Text(body),
                        title=Text(f"{prefix}tool use: {event.name}"),
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
                        title=Text(f"{prefix}{label}: {event.name}"),
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
            own_quiet = not self._failure_cause and event.step == self.context.step
            self._line(console, prefix + ("✗ Stream failed" if own_quiet else failure_text(event)), "bold red")
        elif isinstance(event, Cancelled):
            self._line(console, prefix + "✗ Stream cancelled", "yellow")

    def _header(self, console: Console, event: StepStarted) -> None:
        model = event.model or "default model"
        if event.step == self.context.step:
            self._end_line()
            with console.capture() as capture:
                console.rule(
                    Text(
                        f"▶ {event.step}{position_text(self.context)} · {event.provider} · {model}",
                        style="bold",
                    ),
                    align="left",
                    style="blue",
                )
            self._out.append(capture.get())
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
                    title=Text(f"✓ {event.step} completed"),
                    title_align="left",
                    border_style="green",
                    expand=False,
                ),
            )
        else:
            stats = " · ".join(f"{name} {value}" for name, value in _stats_rows(response))
            self._line(console, f"{prefix}✓ completed · {stats}", "green")
