"""Run-level context: the run id, the clock origin and the run's event sink."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import trio

from ._events import Event, RunFinished, RunStarted

__all__ = ("RunContext", "emit_run_finished", "emit_run_started")


@attrs.frozen(kw_only=True)
class RunContext:
    """What every step of one run shares."""

    run_id: str
    """The run's id; every event's envelope carries it."""
    origin: float
    """``trio.current_time()`` when the run started: events' ``at`` count from it."""
    events: trio.MemorySendChannel[Event] | None = None
    """The run's event stream (``open_run().events``), or ``None``.

    Each step sends every one of its events here (policy ``block``: a slow
    reader slows the run) through its own clone, which it closes; the channel
    itself stays open: the run's owner closes it after ``RunFinished``."""

    @classmethod
    def start(cls, run_id: str, events: trio.MemorySendChannel[Event] | None = None) -> RunContext:
        """A context whose clock origin is now."""
        return cls(run_id=run_id, origin=trio.current_time(), events=events)

    def now(self) -> float:
        """Seconds since the run started, on the trio clock."""
        return trio.current_time() - self.origin


async def _emit(run: RunContext, event: Event) -> None:
    if run.events is None:
        return
    try:
        await run.events.send(event)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # nobody listens any more; the run goes on


async def emit_run_started(run: RunContext, pipeline: str, steps: Sequence[str] = ()) -> RunStarted:
    """Send ``RunStarted`` to the run's event stream (blocks while it is full); return it.

    Closes nothing; a stream whose reader is gone is skipped. Cancelled: the
    event may not have been sent, and the cancellation propagates.
    """
    at = run.now()
    event = RunStarted(
        run_id=run.run_id, step="", at=at, pipeline=pipeline, steps=tuple(steps), started_wall=time.time() - at
    )
    await _emit(run, event)
    return event


async def emit_run_finished(
    run: RunContext,
    status: Literal["ok", "failed", "cancelled"],
    summary: dict[str, Any] | None = None,
) -> RunFinished:
    """Send ``RunFinished`` to the run's event stream (blocks while full); return it.

    Closes nothing (the run's owner closes the stream after this); a stream whose
    reader is gone is skipped. Cancelled: the event may not have been sent; so
    call it shielded and bounded when the run was cancelled.
    """
    event = RunFinished(run_id=run.run_id, step="", at=run.now(), status=status, summary=summary or {})
    await _emit(run, event)
    return event
