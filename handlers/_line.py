"""The one-line display: one plain line per step when it ends, for piped output and ``--no-stream``.

``sluiceway run`` attaches it to a step that has no handler when its output
is not a terminal (or the step does not stream): the answer's first line, cut
to fit, so a pipe or a log gets one append-only line per step. On a TTY it
shows a transient spinner with the elapsed time while the step runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar, Final

import trio
from rich.console import Console, RenderableType
from rich.spinner import Spinner
from rich.text import Text

from ..engine import (
    TERMINAL_EVENTS,
    Cancelled,
    Done,
    Event,
    Failed,
    HandlerContext,
    HandlerPolicy,
    Response,
    StepStarted,
)
from ._base import SyncHandler, stdout_of, terminal_text
from ._console import _in_trio, _make_console, position_text
from ._live import LiveRegion, spinner_frame

__all__ = ("StepLineHandler",)

#: Characters of the answer a step's line shows, at most.
LINE_CHARS: Final = 100


def answer_preview(response: Response) -> str:
    """The answer's first line, cut to ``LINE_CHARS`` (``…`` when there is more)."""
    text = response.text
    if not text and response.output is not None:
        text = json.dumps(response.output, ensure_ascii=False, default=str)
    text = terminal_text(text.replace("\t", " ")).strip()
    first, _, rest = text.partition("\n")
    first = first.strip()
    if len(first) > LINE_CHARS:
        return first[: LINE_CHARS - 1] + "…"
    return first + (" …" if rest.strip() else "")


class StepLineHandler(SyncHandler):
    """One line per step, when it ends: ``✓ ask (step 1 of 2): the answer's first line``.

    Ignores every other event (cheap: a type check per delta). A failure's line
    does not repeat its cause: the run's summary names it once.
    """

    policy: ClassVar[HandlerPolicy] = "coalesce"
    """Deltas are not shown: merged ones are as good."""

    def __init__(self, context: HandlerContext) -> None:
        self.context = context
        self._console: Console | None = None
        self._live: LiveRegion | None = None
        self._since = 0.0
        self._spinner = Spinner("dots", style="cyan")
        self._closed = False

    def _get_console(self) -> Console:
        stream = stdout_of(self.context)
        if self._console is None or self._console.file is not stream:
            self._console = _make_console(stream, None)
        return self._console

    def _handle_events(self, events: Sequence[Event]) -> None:
        """Write one line at the step's end; on a TTY, keep its spinner going."""
        for event in events:
            if event.step != self.context.step:
                continue
            if isinstance(event, StepStarted):
                self._start()
            elif isinstance(event, TERMINAL_EVENTS):
                self._stop()
                self._line(event)
        if self._live is not None:
            self._live.refresh()

    async def aclose(self) -> None:
        """Stop the spinner. Idempotent; the stream itself stays open (not ours)."""
        if self._closed:
            return
        self._closed = True
        self._stop()

    def _name(self) -> str:
        return f"{self.context.step}{position_text(self.context)}"

    def _start(self) -> None:
        console = self._get_console()
        if self._live is not None or self._closed or not console.is_terminal or not _in_trio():
            return
        self._since = trio.current_time()
        self._live = LiveRegion(console, self._render_spinner, transient=True, tick=self._tick)

    def _render_spinner(self) -> RenderableType:
        now = trio.current_time()
        return Text.assemble(spinner_frame(self._spinner, now), " ", (f"{self._name()} · {now - self._since:.1f} s", "dim"))

    def _tick(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def _stop(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def _line(self, event: Event) -> None:
        if isinstance(event, Done):
            preview = answer_preview(event.response)
            line = f"✓ {self._name()}" + (f": {preview}" if preview else "")
        elif isinstance(event, Failed):
            line = f"✗ {self._name()} failed"
        elif isinstance(event, Cancelled):
            line = f"⨯ {self._name()} cancelled"
        else:
            return
        stream = self._get_console().file
        stream.write(line + "\n")
        stream.flush()
