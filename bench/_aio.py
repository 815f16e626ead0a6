"""The asyncio bridge (``sluiceway.aio``): its cost per event, and memory under a slow reader.

Rows:

1. events/s through ``sluiceway.aio.open_run`` (asyncio, trio guest mode) and
   through the trio ``sluiceway.open_run``, same stream (one mock step,
   pattern ``fast``, one word per delta), one run each, alternating; medians
   over the repetitions. The issue's bound: the bridge costs at most 1.5x
   per event.
2. a slow asyncio reader (it sleeps every few events): the events in flight
   (sent by the run minus read by the reader, at most) and the peak of
   Python allocations (tracemalloc), for a stream and one four times as long.
   Bounded memory means both stay flat as the stream grows.

``python -m bench._aio [--quick]`` prints the rows as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import tracemalloc
from typing import Any

import trio
from sluiceway.specs import ClaudeStep, MockSpec, Pipeline

import sluiceway
import sluiceway.aio

FULL: dict[str, Any] = {"aio_reps": 5, "aio_events": 20_000, "aio_slow_events": 4_000}
QUICK: dict[str, Any] = {"aio_reps": 1, "aio_events": 500, "aio_slow_events": 200}
#: The slow reader sleeps this long every SLOW_EVERY events.
SLOW_SLEEP = 0.001
SLOW_EVERY = 20
BUFFER = 256


def _spec(deltas: int) -> Pipeline:
    mock = MockSpec(response=" ".join(["w"] * deltas), pattern="fast")
    return Pipeline(name="bench_aio", steps=(ClaudeStep(name="s", prompt="p", mock=mock),))


async def _trio_once(spec: Pipeline, out: str) -> tuple[int, float]:
    count = 0
    start = time.perf_counter()
    async with sluiceway.open_run(spec, output_dir=out, handlers=[], buffer_size=BUFFER) as run:
        async for _ in run.events:
            count += 1
    return count, time.perf_counter() - start


async def _aio_once(spec: Pipeline, out: str) -> tuple[int, float]:
    await sluiceway.aio.invoke("warm up", mock="x")  # the guest run starts outside the timing
    count = 0
    start = time.perf_counter()
    async with sluiceway.aio.open_run(spec, output_dir=out, handlers=[], buffer_size=BUFFER) as run:
        async for _ in run.events:
            count += 1
    return count, time.perf_counter() - start


async def _slow_reader(spec: Pipeline, out: str) -> dict[str, Any]:
    sent = 0
    ahead = 0

    def count(event: Any) -> None:
        nonlocal sent
        sent += 1

    read = 0
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    async with sluiceway.aio.open_run(spec, output_dir=out, handlers=[], on_event=count, buffer_size=BUFFER) as run:
        async for _ in run.events:
            read += 1
            ahead = max(ahead, sent - read)
            if read % SLOW_EVERY == 0:
                await asyncio.sleep(SLOW_SLEEP)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"events": read, "seconds": round(seconds, 2), "max_in_flight": ahead, "peak_alloc_kib": round(peak / 1024)}


def aio_rows(settings: dict[str, Any]) -> dict[str, Any]:
    """Run the bridge's rows with *settings* (``aio_reps``, ``aio_events``, ``aio_slow_events``)."""
    sizes = {**FULL, **{k: v for k, v in settings.items() if k in FULL}}
    spec = _spec(sizes["aio_events"])
    trio_rates: list[float] = []
    aio_rates: list[float] = []
    events = 0
    with tempfile.TemporaryDirectory() as out:
        for _ in range(sizes["aio_reps"]):
            n, seconds = trio.run(_trio_once, spec, out)
            trio_rates.append(n / seconds)
            n2, seconds2 = asyncio.run(_aio_once(spec, out))
            aio_rates.append(n2 / seconds2)
            assert n == n2
            events = n
        slow = [asyncio.run(_slow_reader(_spec(m), out)) for m in (sizes["aio_slow_events"], 4 * sizes["aio_slow_events"])]
    trio_rate = statistics.median(trio_rates)
    aio_rate = statistics.median(aio_rates)
    return {
        "bridge": {
            "events_per_run": events,
            "reps": sizes["aio_reps"],
            "trio_open_run_events_per_s": round(trio_rate),
            "aio_open_run_events_per_s": round(aio_rate),
            "trio_us_per_event": round(1e6 / trio_rate, 2),
            "aio_us_per_event": round(1e6 / aio_rate, 2),
            "aio_cost_ratio": round(trio_rate / aio_rate, 3),
        },
        "slow_reader": {
            "buffer_size": BUFFER,
            "handoff_batches": sluiceway.aio._api.HANDOFF_BATCHES,
            "sleep_ms_every": f"{SLOW_SLEEP * 1000:g} ms / {SLOW_EVERY} events",
            "runs": slow,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._aio", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run; numbers mean nothing)")
    args = parser.parse_args()
    print(json.dumps(aio_rows(QUICK if args.quick else FULL), indent=2))


if __name__ == "__main__":
    main()
