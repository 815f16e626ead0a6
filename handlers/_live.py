"""A live region at the bottom of a terminal, redrawn at a bounded rate.

The display handlers (``console``, and the CLI's default display) use it on a
TTY for what changes in place: a spinner with the elapsed time while a step
waits for its first token, and a composite step's progress bar with one line
per running sub-step. Events only change the handler's state; the terminal is
written at most ``REFRESH_PER_SECOND`` times a second (on trio's clock), so a
batch of many fast streams costs a few redraws a second, not one write per
delta.

Between events nothing would redraw a spinner, so while the region is shown a
daemon thread (``Ticker``) asks the trio run, through its token, to call the
handler back; the callback runs in the trio thread like any handler call, so
the handler's state needs no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

import trio
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

__all__ = ("REFRESH_PER_SECOND", "LiveRegion", "Ticker", "spinner_frame")

#: Redraws per second of a live region, at most (rich's ``Live`` defaults to 4; a spinner wants more).
REFRESH_PER_SECOND: Final = 12
#: Seconds between two redraws, at least.
FRAME_INTERVAL: Final = 1 / REFRESH_PER_SECOND


class Ticker:
    """Calls *callback* in the trio thread about every *interval* seconds, until ``stop``.

    Runs a daemon thread that posts the callback with ``run_sync_soon``
    (idempotent: a slow trio thread gets one pending call, not a queue). It
    stops by itself when the trio run is over. A callback that raises stops
    the ticker instead of crashing the run.
    """

    def __init__(self, interval: float, callback: Callable[[], None]) -> None:
        self._interval = interval
        self._callback = callback
        self._token = trio.lowlevel.current_trio_token()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sluiceway-display-ticker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._token.run_sync_soon(self._call, idempotent=True)
            except trio.RunFinishedError:
                return

    def _call(self) -> None:
        if self._stopped.is_set():
            return
        try:
            self._callback()
        except Exception:  # a broken display must not crash the run: it just stops ticking
            self._stopped.set()

    def stop(self) -> None:
        """Stop ticking (idempotent; returns at once)."""
        self._stopped.set()


class _Current:
    """A renderable that renders the state as it is now (rich keeps the last one it was given)."""

    def __init__(self, render: Callable[[], RenderableType]) -> None:
        self._render = render

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._render()


class LiveRegion:
    """rich's ``Live`` without its refresh thread: redrawn by ``refresh``, at a bounded rate.

    Lines that must stay (a sub-step's completion, a tool call) are queued with
    ``print_above`` and written with the next redraw, above the region.
    """

    def __init__(
        self,
        console: Console,
        render: Callable[[], RenderableType],
        *,
        transient: bool,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.console = console
        current = _Current(render)
        self._live = Live(
            console=console,
            auto_refresh=False,
            transient=transient,
            redirect_stdout=False,
            redirect_stderr=False,
            get_renderable=lambda: current,
        )
        self._above: list[RenderableType] = []
        self._next_frame = float("-inf")
        self._ticker = Ticker(FRAME_INTERVAL, tick) if tick is not None else None
        self.frames = 0
        """How many times the region was written (tests bound it by the rate)."""
        self._live.start(refresh=False)

    def print_above(self, renderable: RenderableType) -> None:
        """Queue *renderable* to be written above the region with the next redraw."""
        self._above.append(renderable)

    def refresh(self, *, force: bool = False) -> bool:
        """Redraw (with the queued lines) when a frame is due or *force*; True when it did."""
        now = trio.current_time()
        if not force and now < self._next_frame:
            return False
        self._next_frame = now + FRAME_INTERVAL
        self.frames += 1
        if self._above:
            above, self._above = self._above, []
            self.console.print(Group(*above))  # rich redraws the region below what it prints
        else:
            self._live.refresh()
        return True

    def stop(self) -> None:
        """Write what is queued and the region's last state (erased when transient); stop ticking."""
        if self._ticker is not None:
            self._ticker.stop()
        if self._above:
            above, self._above = self._above, []
            self.console.print(Group(*above))
        self.frames += 1
        self._live.stop()


def spinner_frame(spinner: Spinner, now: float) -> Text:
    """The spinner's frame at *now* (trio's clock), as text to assemble into a line."""
    frame = spinner.render(now)
    return frame if isinstance(frame, Text) else Text(str(frame))
