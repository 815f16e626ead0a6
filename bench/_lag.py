"""Delivery lag in the concurrency runs: the recorders (handlers), and the figures made from them.

The server stamps each delta's text with ``time.monotonic()`` as it writes it
(``stamp=1``, see ``bench/_server.py``); a recorder takes receipt minus that
stamp. Linux's monotonic clock is system-wide, so the two processes agree.
The figures split a run in three by send time: the start-up (before the last
stream's first delta), the window in which all streams were open, and the
wind-down (after the first stream's last delta).
"""

from __future__ import annotations

import array
import time
from collections.abc import Sequence
from typing import Any

import attrs
from sluiceway.engine import Delta
from sluiceway.handlers._base import SyncHandler

from ._measure import ms, ms_percentiles, pct


class LagRecorder(SyncHandler):
    """Records, per delta, handler receipt minus the server's send stamp (the delta's text).

    One per stream; also keeps the stream's first and last send stamps (when it was open).
    A ``SyncHandler``: ``handle``, ``handle_batch`` and ``handle_nowait`` all record.
    """

    def __init__(self, lags: array.array[float], stamps: array.array[float] | None = None) -> None:
        self.delta = Delta
        self.lags = lags
        self.stamps = stamps
        self.first: float | None = None
        self.last: float | None = None
        self.started: float | None = None
        """When its step was started (set by the bench)."""
        self.first_receipt: float | None = None

    def _handle_events(self, events: Sequence[Any]) -> None:
        now = time.monotonic()
        lags, stamps, delta = self.lags, self.stamps, self.delta
        sent = None
        for event in events:
            if type(event) is delta:
                sent = float(event.content)
                lags.append(now - sent)
                if stamps is not None:
                    stamps.append(sent)
                if self.first is None:
                    self.first = sent
                    self.first_receipt = now
        if sent is not None:
            self.last = sent

    async def aclose(self) -> None:
        pass


class GroupLagRecorder(SyncHandler):
    """The one handler of a composite step: hands each sub-step's events to that stream's ``LagRecorder``."""

    def __init__(self, recorders: Sequence[LagRecorder]) -> None:
        self.by_step = {f"s[{i}]": r for i, r in enumerate(recorders)}

    def _handle_events(self, events: Sequence[Any]) -> None:
        by_step = self.by_step
        for event in events:
            recorder = by_step.get(event.step)  # (the composite step's own events: none)
            if recorder is not None:
                recorder._handle_events((event,))

    async def aclose(self) -> None:
        pass


class ActorLagRecorder(LagRecorder):
    """``LagRecorder`` without ``handle_nowait``: every event goes through its actor."""

    handle_nowait = None  # type: ignore[assignment]


@attrs.frozen
class Phases:
    """A run's lags (seconds, sorted) split by send time into start-up, all open, wind-down."""

    opened: float
    """The last stream's first delta: from then on all streams were open."""
    closing: float
    """The first stream's last delta: from then on streams were ending."""
    start_up: list[float]
    all_open: list[float]
    wind_down: list[float]

    @classmethod
    def split(cls, recorders: Sequence[LagRecorder], lags: Sequence[float], stamps: Sequence[float], t0: float) -> Phases:
        """Split *lags* by their send *stamps*; a run where some stream saw no delta has no window."""
        firsts = [r.first for r in recorders if r.first is not None]
        lasts = [r.last for r in recorders if r.last is not None]
        opened, closing = (max(firsts), min(lasts)) if firsts and len(firsts) == len(recorders) else (t0, t0)
        pairs = list(zip(stamps, lags, strict=True))
        return cls(
            opened=opened,
            closing=closing,
            start_up=sorted(lag for sent, lag in pairs if sent < opened),
            all_open=sorted(lag for sent, lag in pairs if opened <= sent <= closing),
            wind_down=sorted(lag for sent, lag in pairs if sent > closing),
        )


def p99_by_second(lags: Sequence[float], stamps: Sequence[float], t0: float) -> dict[str, float]:
    """Per second of the run (by send time), the p99 lag in ms: tells the start-up from the rest."""
    buckets: dict[int, list[float]] = {}
    for sent, lag in zip(stamps, lags, strict=True):
        buckets.setdefault(int(sent - t0), []).append(lag)
    return {str(k): round(sorted(v)[min(len(v) - 1, int(0.99 * len(v)))] * 1e3, 1) for k, v in sorted(buckets.items())}


def first_delta_ms(recorders: Sequence[LagRecorder]) -> dict[str, float | None]:
    """Per stream, its step started -> its first delta at the handler: p50, p99, max in ms."""
    ttfts = sorted(
        r.first_receipt - r.started for r in recorders if r.first_receipt is not None and r.started is not None
    )
    return {**ms_percentiles(ttfts), "max": ttfts[-1] * 1e3 if ttfts else None}


def lag_ms(ordered: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max of the sorted *ordered* lags, in ms."""
    return {"p50": ms(pct(ordered, 0.50)), "p99": ms(pct(ordered, 0.99)), "max": ordered[-1] * 1e3 if ordered else None}
