"""4. Peak memory under backpressure, ``block`` and ``coalesce``: one child process per policy.

A provider with no I/O yields text deltas (``"tok<i> "``) at 100 per virtual
millisecond into a handler that sleeps 1 virtual ms per event (100x slower),
next to a ``buffer`` handler. Virtual time (``MockClock(autojump_threshold=0)``)
keeps the run short. The child warms up on a small stream, resets its peak RSS,
runs, and reports the peak growth beyond the text it kept.
"""

from __future__ import annotations

import gc
import subprocess
import time
from collections.abc import Sequence
from typing import Any, Final, Literal

import trio
import trio.testing

from ._children import finish_child, start_child
from ._common import bench_request, buffer_handler
from ._measure import hwm, peak_rss, reset_peak, rss_now
from ._settings import BackpressureSettings, Sizes

POLICIES: Final[tuple[Literal["block", "coalesce"], ...]] = ("block", "coalesce")


class _FastStream:
    """A provider call yielding *n* text deltas with no I/O; a (virtual) 1 ms sleep per 100 deltas.

    The stream's rate is 100 deltas per virtual millisecond (10 µs each).
    """

    def __init__(self, n: int) -> None:
        from sluiceway.engine import Usage
        from sluiceway.engine._provider_events import (
            BlockStart,
            BlockStop,
            MessageDeltaInfo,
            MessageStart,
            MessageStop,
            TextChunk,
        )

        self.n = n
        self.head = [MessageStart(model="bench", usage=Usage(input_tokens=1)), BlockStart(0, "text")]
        self.tail = [BlockStop(0), MessageDeltaInfo(stop_reason="end_turn", usage=Usage(output_tokens=n)), MessageStop()]
        self.chunk = TextChunk

    async def __aenter__(self) -> Any:
        return self._events()

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def _events(self) -> Any:
        for event in self.head:
            yield event
        chunk = self.chunk
        for i in range(self.n):
            if i % 100 == 0:
                await trio.sleep(0.001)
            yield chunk(0, f"tok{i} ")
        for event in self.tail:
            yield event


class FastProvider:
    """A provider whose every call is a ``_FastStream`` of *n* deltas."""

    name = "bench"

    def __init__(self, n: int) -> None:
        self.n = n

    def stream(self, request: Any) -> _FastStream:
        return _FastStream(self.n)

    async def aclose(self) -> None:
        pass


class SlowHandler:
    """100x slower than the stream: 1 ms (virtual) per event, slept per batch."""

    def __init__(self) -> None:
        self.deltas = 0

    async def handle(self, event: Any) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[Any]) -> None:
        self.deltas += len(events)
        await trio.sleep(0.001 * len(events))

    async def aclose(self) -> None:
        pass


async def _one_step(policy: str, n: int) -> dict[str, Any]:
    """One step of *n* deltas into the slow handler under *policy* (and a ``buffer``)."""
    from sluiceway.engine import HandlerConsumer, RunContext, stream_step

    handler = SlowHandler()
    t0 = time.perf_counter()
    response = await stream_step(
        run=RunContext.start("bench"), path="bench", provider=FastProvider(n), request=bench_request("bench"),
        consumers=[HandlerConsumer(handler, name="slow", policy=policy), HandlerConsumer(buffer_handler(), name="buffer")],  # type: ignore[arg-type]
    )
    return {
        "text_bytes": len(response.text.encode()),
        "delta_count": response.metrics.delta_count,
        "handler_batches_events": handler.deltas,
        "virtual_s": trio.current_time(),
        "real_s": time.perf_counter() - t0,
        "backpressure_wait_virtual_s": response.metrics.backpressure_wait,
    }


def child_backpressure(settings: BackpressureSettings) -> dict[str, Any]:
    """In a child: the warm-up, then the measured run; its peak RSS beyond the text."""
    policy, n = settings.policy, settings.deltas
    # warm up (imports, caches) on a small stream, so the baseline holds them
    trio.run(_one_step, policy, 1000, clock=trio.testing.MockClock(autojump_threshold=0))
    gc.collect()
    peak_before = peak_rss()
    reset_peak()
    rss_before = rss_now()
    out = trio.run(_one_step, policy, n, clock=trio.testing.MockClock(autojump_threshold=0))
    peak = hwm() or peak_rss()
    out.update(
        policy=policy,
        deltas=n,
        rss_before_mb=rss_before / 2**20,
        peak_rss_mb=peak / 2**20,
        peak_rss_before_run_mb=peak_before / 2**20,
        peak_source="VmHWM after clear_refs" if hwm() else "ru_maxrss",
        beyond_text_mb=(peak - rss_before - out["text_bytes"]) / 2**20,
    )
    return out


def start(sizes: Sizes) -> dict[str, subprocess.Popen[str]]:
    """Start one child per policy (they run in virtual time, alongside what the parent does)."""
    return {p: start_child(BackpressureSettings(policy=p, deltas=sizes.bp_deltas)) for p in POLICIES}


def finish(children: dict[str, subprocess.Popen[str]]) -> dict[str, Any]:
    """``results["backpressure"]``: each policy's figures."""
    return {p: finish_child(proc) for p, proc in children.items()}
