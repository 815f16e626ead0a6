"""3. The concurrency run itself, in a child process: many paced streams through one provider.

The child runs one warm-up stream, then (``tuned``) ``sluiceway.tune_gc()``, then
``streams`` steps starting at uniformly random times over ``ramp`` seconds, each
``rate * seconds`` deltas paced by the server, and reports the lag figures
(``_lag``), its CPU (sampled every 0.25 s, to give each phase its share), its
full collections and its peak RSS as one JSON line.
"""

from __future__ import annotations

import array
import gc
import os
import random
import time
from typing import Any

import attrs
import trio
from sluiceway.engine import HandlerConsumer, Response, RunContext, stream_group, stream_step
from sluiceway.providers import AnthropicProvider

import sluiceway

from ._common import bench_request
from ._lag import (
    ActorLagRecorder,
    GroupLagRecorder,
    LagRecorder,
    Phases,
    first_delta_ms,
    lag_ms,
    p99_by_second,
)
from ._measure import cpu_seconds, ms_percentiles, peak_rss, raise_open_files, rss_now
from ._settings import ConcurrencySettings

#: Seconds between two samples of the process's CPU.
CPU_SAMPLE_PERIOD = 0.25


@attrs.define
class Probe:
    """What a run records besides the lags: failures, full collections, CPU samples."""

    failures: list[str] = attrs.Factory(list)
    full_collections: list[tuple[float, float]] = attrs.Factory(list)
    """(start, seconds) of each full collection (``gc.callbacks``)."""
    cpu_marks: list[tuple[float, float]] = attrs.Factory(list)
    """(``time.monotonic()``, process CPU seconds), every ``CPU_SAMPLE_PERIOD``."""
    _gc_begun: float = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """A ``gc.callbacks`` entry: times the full (generation 2) collections."""
        if info["generation"] == 2:
            if phase == "start":
                self._gc_begun = time.monotonic()
            else:
                self.full_collections.append((self._gc_begun, time.monotonic() - self._gc_begun))

    def mark_cpu(self) -> None:
        """Take one CPU sample now."""
        self.cpu_marks.append((time.monotonic(), cpu_seconds()))

    async def sample_cpu(self) -> None:
        """Sample the CPU until cancelled."""
        while True:
            self.mark_cpu()
            await trio.sleep(CPU_SAMPLE_PERIOD)

    def mark_at(self, t: float) -> tuple[float, float]:
        """The CPU sample nearest *t*: (its time, the CPU seconds then)."""
        return min(self.cpu_marks, key=lambda m: abs(m[0] - t)) if self.cpu_marks else (t, 0.0)


def child_concurrency(settings: ConcurrencySettings) -> dict[str, Any]:
    """Run the streams *settings* describe; return the run's figures (one ``runs`` entry)."""
    raise_open_files(settings.streams * 2 + 256)
    lags: array.array[float] = array.array("d")
    stamps: array.array[float] = array.array("d")
    recorder = {"direct": LagRecorder, "actor": ActorLagRecorder}[settings.handler]
    recorders = [recorder(lags, stamps) for _ in range(settings.streams)]
    probe = Probe()
    rss_before = rss_now()
    out = trio.run(_run, settings, recorders, probe)
    t0 = out["t0_monotonic"]
    ordered = sorted(lags)
    n = len(ordered)
    out.update(
        streams=settings.streams,
        rate=settings.rate,
        seconds=settings.seconds,
        ramp=settings.ramp,
        gc_mode=settings.gc_mode,
        max_starting=out.pop("max_starting"),
        handler=settings.handler,
        shape=settings.shape,
        first_delta_ms=first_delta_ms(recorders),
        events=n,
        expected_events=settings.streams * int(settings.rate * settings.seconds),
        failures=len(probe.failures),
        failure_sample=probe.failures[:3],
        lag_ms=lag_ms(ordered),
        **_phase_figures(Phases.split(recorders, lags, stamps, t0), probe, t0),
        full_collections=[{"at_s": round(at - t0, 2), "ms": round(d * 1e3, 1)} for at, d in probe.full_collections],
        p99_lag_ms_by_second=p99_by_second(lags, stamps, t0),
        load_average=os.getloadavg(),
        cpu_s_per_1000_events=out["cpu_s"] / n * 1000 if n else None,
        rss_before_mb=rss_before / 2**20,
        peak_rss_mb=peak_rss() / 2**20,
    )
    return out


def _phase_figures(phases: Phases, probe: Probe, t0: float) -> dict[str, Any]:
    """``all_open``, ``start_up`` and ``wind_down``: each phase's lags, and its CPU."""
    (open_from, cpu_from), (open_to, cpu_to) = probe.mark_at(phases.opened), probe.mark_at(phases.closing)
    open_wall = open_to - open_from
    last = probe.cpu_marks[-1] if probe.cpu_marks else None
    return {
        "all_open": {
            "from_s": phases.opened - t0,
            "to_s": phases.closing - t0,
            "events": len(phases.all_open),
            **ms_percentiles(phases.all_open, "_ms"),
            "cpu_utilisation": (cpu_to - cpu_from) / open_wall if open_wall > 0 else None,
        },
        "start_up": {
            "events": len(phases.start_up),
            **ms_percentiles(phases.start_up, "_ms"),
            "cpu_s": cpu_from - probe.mark_at(t0)[1],
        },
        "wind_down": {  # from the first stream's last delta to the end: the streams ending
            "events": len(phases.wind_down),
            **ms_percentiles(phases.wind_down, "_ms"),
            "seconds": last[0] - open_to if last else None,
            "cpu_s": last[1] - cpu_to if last else None,
        },
    }


async def _run(settings: ConcurrencySettings, recorders: list[LagRecorder], probe: Probe) -> dict[str, Any]:
    """The warm-up, then every stream; returns wall and CPU seconds, SDK clients, start time."""
    # the provider makes its own SDK clients (at most 64 open streams on each: see AnthropicProvider)
    limit = {} if settings.max_starting == "default" else {"max_starting": settings.max_starting}
    provider = AnthropicProvider(api_key="sk-bench", base_url=settings.url, max_tokens=64, **limit)
    run = RunContext.start("bench")
    await stream_step(  # warm-up: the SDK builds its lazy schemas on the first request
        run=run, path="warm-up", provider=provider, request=bench_request("fake:text?deltas=3"), consumers=[]
    )
    if settings.gc_mode == "tuned":
        sluiceway.tune_gc()
    gc.callbacks.append(probe.on_gc)
    cpu0 = cpu_seconds()
    t0 = time.monotonic()
    async with trio.open_nursery() as outer:
        outer.start_soon(probe.sample_cpu)
        await _streams(settings, run, provider, recorders, probe.failures)
        outer.cancel_scope.cancel()
    wall = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    probe.mark_cpu()
    gc.callbacks.remove(probe.on_gc)
    clients = provider.statistics().clients
    max_starting = provider.max_starting
    await provider.aclose()
    return {"wall_s": wall, "cpu_s": cpu, "sdk_clients": clients, "t0_monotonic": t0, "max_starting": max_starting}


async def _streams(
    settings: ConcurrencySettings, run: RunContext, provider: Any, recorders: list[LagRecorder], failures: list[str]
) -> None:
    """Every stream, as independent steps or as the sub-steps of one composite step."""
    model = f"fake:text?deltas={int(settings.rate * settings.seconds)}&delay_ms={1000 // settings.rate}&stamp=1"
    rng = random.Random(6)

    async def one(i: int, sub: Any = None) -> None:
        await trio.sleep(rng.random() * settings.ramp)  # arrivals spread over the ramp
        recorders[i].started = time.monotonic()
        try:
            await stream_step(
                run=run, path=f"s[{i}]", provider=provider, request=bench_request(model),
                consumers=[HandlerConsumer(recorders[i], name="lag") if sub is None else sub()],
            )
        except Exception as exc:
            failures.append(repr(exc))

    async def body(sub: Any) -> Any:
        async with trio.open_nursery() as nursery:
            for i in range(settings.streams):
                nursery.start_soon(one, i, sub)
        return Response()

    if settings.shape == "group":
        await stream_group(
            run=run, path="g", consumers=[HandlerConsumer(GroupLagRecorder(recorders), name="lag")],
            body=body, step_type="parallel_claude", concurrency=settings.streams,
        )
    else:
        async with trio.open_nursery() as nursery:
            for i in range(settings.streams):
                nursery.start_soon(one, i)
