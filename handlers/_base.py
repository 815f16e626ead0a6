"""What the built-in handlers share: errors, timestamps, line bookkeeping, wording.

Handlers import ``sluiceway.engine`` event types only (DESIGN.md, "Layout");
this module is the one place the display handlers agree on how a retry, a
completion or a sub-step looks, so ``simple``, ``console`` and ``file`` say the
same thing in the same words.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from .._errors import SluicewayError
from ..engine import Event, Failed, HandlerContext, Response, Retrying

__all__ = (
    "HandlerConfigError",
    "LineTracker",
    "SyncHandler",
    "clock",
    "completion_text",
    "failure_text",
    "first_line",
    "retry_text",
    "stderr_of",
    "stdout_of",
    "substep_prefix",
    "terminal_text",
)


class HandlerConfigError(SluicewayError, ValueError):
    """A handler's options are unusable (a path that escapes, a function that won't import).

    Raised when the handler is constructed, before any event flows.
    """


class SyncHandler:
    """A handler whose work never waits on trio: ``_handle_events(events)`` does it all.

    ``handle``, ``handle_batch`` and ``handle_nowait`` all call it, so the engine
    hands such a handler each event in the step's task while its actor has nothing
    waiting (no task switch), and a batch of what was waiting otherwise (one write
    per batch). See ``Handler`` in ``sluiceway.engine``.
    """

    __slots__ = ()

    def _handle_events(self, events: Sequence[Event]) -> None:
        raise NotImplementedError

    async def handle(self, event: Event) -> None:
        """Handle one event."""
        self._handle_events((event,))

    async def handle_batch(self, events: Sequence[Event]) -> None:
        """Handle *events*, in order, at once. No checkpoint."""
        self._handle_events(events)

    def handle_nowait(self, event: Event) -> None:
        """Handle one event in the sender's task (the engine calls it while nothing waits)."""
        self._handle_events((event,))


def stdout_of(context: HandlerContext) -> TextIO:
    """The stream to write to, resolved now (``sys.stdout`` may be swapped between writes)."""
    return context.stdout if context.stdout is not None else sys.stdout


def stderr_of(context: HandlerContext) -> TextIO:
    """The diagnostics stream, resolved now."""
    return context.stderr if context.stderr is not None else sys.stderr


def clock(context: HandlerContext, at: float) -> str:
    """``[HH:MM:SS]``: the local wall time of an event ``at`` seconds into the run."""
    return time.strftime("[%H:%M:%S]", time.localtime(context.started_wall + at))


def substep_prefix(context: HandlerContext, step: str) -> str:
    """``"[batch[3]] "`` for an event of a sub-step, ``""`` for the handler's own step."""
    return "" if step == context.step else f"[{step}] "


#: C0 controls but tab and newline, DEL, and the C1 controls (``\x9b`` is a one-byte CSI).
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)])


def terminal_text(text: str) -> str:
    """*text* without control characters (tab and newline stay), so it is safe to show.

    A model's answer (or a tool's output it repeats) could carry escape sequences
    that retitle, clear or rewrite the user's terminal; the display handlers show
    the text, never the sequences. The ``file`` and ``buffer`` handlers keep it exact.
    """
    return text.translate(_CONTROLS) if not text.isprintable() else text


def first_line(text: str) -> str:
    """The first line of *text* (empty for empty text)."""
    return text.split("\n", 1)[0].rstrip("\r")


def retry_text(event: Retrying) -> str:
    """``↻ attempt 1 failed (overloaded); output above is discarded; attempt 2 follows in 1.0 s``."""
    failed = event.next_attempt - 1
    discarded = "; output above is discarded" if event.output_may_have_started else ""
    return (
        f"↻ attempt {failed} failed ({event.reason}){discarded}; "
        f"attempt {event.next_attempt} follows in {event.delay:.1f} s"
    )


def completion_text(response: Response) -> str:
    """``✓ Stream completed: N messages in X ms`` (the seeds' completion line)."""
    metrics = response.metrics
    return f"✓ Stream completed: {metrics.message_count} messages in {round(metrics.duration * 1000)} ms"


def failure_text(event: Failed) -> str:
    """``✗ Stream failed: <message>``."""
    message = event.message or str(event.error) or type(event.error).__name__
    return f"✗ Stream failed: {message}"


class LineTracker:
    """Which line is open on a text stream, so streamed text and whole lines never mix.

    Streamed text (deltas) leaves a line open for one ``(step, kind)``; anything
    else first ends that line. When deltas of another step arrive mid-line (batch
    tasks, parallel branches), the open line ends and a new, prefixed line starts,
    so interleaved sub-steps stay readable.
    """

    __slots__ = ("at_line_start", "open_key")

    def __init__(self) -> None:
        self.at_line_start = True
        """True when the last thing written ended a line (or nothing was written)."""
        self.open_key: tuple[str, str] | None = None
        """``(step, kind)`` of the streamed line that is open, if any."""

    def needs_header(self, step: str, kind: str) -> bool:
        """True when streamed text of *(step, kind)* must start a new line with a header."""
        return self.open_key != (step, kind)

    def end_line(self, out: list[str]) -> None:
        """End the open line, if any, appending the newline to *out*."""
        if not self.at_line_start:
            out.append("\n")
            self.at_line_start = True
        self.open_key = None

    def end_line_of(self, step: str, out: list[str]) -> None:
        """End the open line if it belongs to *step*; another step's line stays open."""
        if self.open_key is not None and self.open_key[0] == step:
            self.end_line(out)

    def stream(self, step: str, kind: str, header: str, text: str, out: list[str]) -> None:
        """Append streamed *text*, starting a new line with *header* when needed."""
        if self.needs_header(step, kind):
            self.end_line(out)
            out.append(header)
            self.open_key = (step, kind)
            self.at_line_start = not header
        if text:
            out.append(text)
            self.at_line_start = text.endswith("\n")

    def line(self, text: str, out: list[str]) -> None:
        """Append a whole line, ending any open line first."""
        self.end_line(out)
        out.append(text + "\n")
