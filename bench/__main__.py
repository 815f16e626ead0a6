"""``python -m bench``: sluiceway's benchmarks against the fake Messages API (issue 6).

Run from the repository root. Everything runs in one go (under 5 minutes on
2 cores), prints a table and writes ``bench/results.json``:

1. throughput on one stream: (a) bare loop over the SDK's ``create(stream=True)``,
   (b) the SDK's ``messages.stream()`` helper, (c) sluiceway end to end
   (``AnthropicProvider`` -> ``stream_step`` -> ``buffer`` + a no-op handler),
   (d) raw HTTP bytes + minimal SSE split + ``json.loads`` (the floor);
2. time to first token on a warm connection, (c) against (a);
3. 1,000 concurrent steps paced by the server at 20 deltas/s each (a child
   process; the server in another one);
4. peak memory under backpressure, ``block`` and ``coalesce`` (a child process
   per measurement);
5. hop cost: one event through the tee to N handler actors.

The fake server always runs in a separate process (``bench/_server.py``), so
its CPU never counts against the client. Variants alternate within each
repetition; figures are medians over the repetitions.

``--quick`` runs tiny sizes (a smoke run, seconds; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio
from sluiceway.handlers._base import SyncHandler

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable


# -- sizes --------------------------------------------------------------------

FULL: dict[str, Any] = {
    "reps": 7,
    "conc_reps": 5,
    "deltas": 20_000,
    "ttft_reps": 40,
    "streams": 1000,
    "rate": 20,
    "seconds": 15.0,
    "ramp": 1.0,
    "bp_deltas": 1_000_000,
    "hop_events": 100_000,
}
QUICK: dict[str, Any] = {
    "reps": 1,
    "conc_reps": 1,
    "deltas": 300,
    "ttft_reps": 3,
    "streams": 10,
    "rate": 20,
    "seconds": 0.3,
    "ramp": 0.05,
    "bp_deltas": 3_000,
    "hop_events": 2_000,
}


# -- the server process ---------------------------------------------------------


class Server:
    """The fake API in a child process (see ``bench/_server.py``)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PY, str(BENCH / "_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("the fake API server did not start")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def report(self) -> dict[str, Any]:
        """The server's CPU seconds so far (``cpu_s``) and its counters (``stats``)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Stop the server (closes its stdin) and wait for it."""
        if self.proc.poll() is None:
            self.proc.communicate("", timeout=30)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        except Exception:
            self.proc.kill()
            self.proc.wait()


# -- helpers ------------------------------------------------------------------------


def _request(model: str, prompt: str = "bench") -> Any:
    from sluiceway.engine import ModelRequest

    return ModelRequest(step="bench", model=model, messages=({"role": "user", "content": prompt},), max_tokens=64)


class NoOpHandler:
    """A handler that does nothing (with a batch fast path, like the built-ins)."""

    async def handle(self, event: Any) -> None:
        pass

    async def handle_batch(self, events: Sequence[Any]) -> None:
        pass

    async def aclose(self) -> None:
        pass


class FirstDelta:
    """Records ``time.perf_counter()`` at the first ``Delta`` it is handed."""

    def __init__(self) -> None:
        self.at: float | None = None

    async def handle(self, event: Any) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[Any]) -> None:
        if self.at is None:
            from sluiceway.engine import Delta

            for event in events:
                if type(event) is Delta:
                    self.at = time.perf_counter()
                    break

    async def aclose(self) -> None:
        pass


def _buffer_handler() -> Any:
    from sluiceway.engine import HandlerContext
    from sluiceway.handlers._buffer import BufferHandler

    return BufferHandler(BufferHandler.Options(), HandlerContext(run_id="bench", step="bench", name="buffer"))


def _sdk_client(url: str, connections: int = 10) -> Any:
    import anthropic
    import httpx2

    http = httpx2.AsyncClient(
        limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=httpx2.Timeout(60.0),
    )
    return anthropic.AsyncAnthropic(api_key="sk-bench", base_url=url, max_retries=0, http_client=http)


# -- 1. throughput & 2. time to first token -------------------------------------------


async def run_a(client: Any, model: str) -> tuple[int, float | None]:
    """(a) a bare loop over the SDK's raw stream; returns (deltas, first delta time)."""
    n = 0
    first = None
    stream = await client.messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "bench"}], stream=True
    )
    async for event in stream:
        if event.type == "content_block_delta":
            if first is None:
                first = time.perf_counter()
            n += 1
    return n, first


async def run_b(client: Any, model: str) -> tuple[int, float | None]:
    """(b) the SDK's ``messages.stream()`` helper (accumulates a snapshot)."""
    n = 0
    first = None
    async with client.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "bench"}]
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta":
                if first is None:
                    first = time.perf_counter()
                n += 1
    return n, first


async def run_c(provider: Any, model: str, extra_handler: Any = None) -> tuple[int, float | None]:
    """(c) sluiceway: provider -> stream_step (accumulation, metrics) -> buffer + no-op handlers."""
    from sluiceway.engine import HandlerConsumer, RunContext, stream_step

    first = FirstDelta()
    consumers = [
        HandlerConsumer(_buffer_handler(), name="buffer"),
        HandlerConsumer(extra_handler or first, name="noop"),
    ]
    response = await stream_step(
        run=RunContext.start("bench"), path="bench", provider=provider, request=_request(model), consumers=consumers
    )
    return response.metrics.delta_count, first.at


async def run_d(http: Any, url: str, model: str) -> tuple[int, float | None]:
    """(d) raw HTTP bytes, a minimal SSE split and ``json.loads`` per event: the floor."""
    n = 0
    first = None
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "bench"}], "stream": True}
    rest = b""
    loads = json.loads
    async with http.stream("POST", url + "/v1/messages", json=body, headers={"x-api-key": "sk-bench"}) as response:
        async for chunk in response.aiter_raw():
            parts = (rest + chunk).split(b"\n\n")
            rest = parts.pop()
            for part in parts:
                data = loads(part[part.index(b"data: ") + 6 :])
                if data["type"] == "content_block_delta":
                    if first is None:
                        first = time.perf_counter()
                    n += 1
    return n, first


async def _throughput_and_ttft(url: str, sizes: dict[str, Any]) -> dict[str, Any]:
    import httpx2
    from sluiceway.providers import AnthropicProvider

    deltas = sizes["deltas"]
    model = f"fake:text?deltas={deltas}"
    client = _sdk_client(url)
    provider = AnthropicProvider(client=client, max_tokens=64)
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(60.0))
    variants: dict[str, Callable[[str], Any]] = {
        "a": lambda m: run_a(client, m),
        "b": lambda m: run_b(client, m),
        "c": lambda m: run_c(provider, m),
        "d": lambda m: run_d(http, url, m),
    }
    rates: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for fn in variants.values():  # warm: connections, imports, caches
            await fn("fake:text?deltas=50")
        for _ in range(sizes["reps"]):
            for key, fn in variants.items():
                gc.collect()
                start = time.perf_counter()
                n, _ = await fn(model)
                elapsed = time.perf_counter() - start
                if n != deltas:
                    raise RuntimeError(f"variant {key}: {n} deltas, expected {deltas}")
                rates[key].append(n / elapsed)
        # time to first token: small streams on the warm connection, (a) and (c) alternating
        # and the CPU of each whole small call (request, 3 deltas, close): the start-up cost per stream
        ttft: dict[str, list[float]] = {"a": [], "c": []}
        call_cpu: dict[str, list[float]] = {"a": [], "c": []}
        small = "fake:text?deltas=3"
        for _ in range(sizes["ttft_reps"]):
            for key in ("a", "c"):
                cpu = time.process_time()
                start = time.perf_counter()
                _, first = await variants[key](small)
                call_cpu[key].append(time.process_time() - cpu)
                assert first is not None
                ttft[key].append(first - start)
    finally:
        await client.close()
        await http.aclose()
    med = {k: statistics.median(v) for k, v in rates.items()}
    diffs = [c - a for a, c in zip(ttft["a"], ttft["c"], strict=True)]
    return {
        "deltas": deltas,
        "reps": sizes["reps"],
        "events_per_s": med,
        "events_per_s_all": rates,
        "ratio_c_a": med["c"] / med["a"],
        "ratio_c_b": med["c"] / med["b"],
        "ratio_c_d": med["c"] / med["d"],
        "ttft_ms": {
            "a_median": statistics.median(ttft["a"]) * 1e3,
            "c_median": statistics.median(ttft["c"]) * 1e3,
            "added_median": (statistics.median(ttft["c"]) - statistics.median(ttft["a"])) * 1e3,
            "added_median_of_pairs": statistics.median(diffs) * 1e3,
            "reps": sizes["ttft_reps"],
        },
        "call_cpu_ms": {k: statistics.median(v) * 1e3 for k, v in call_cpu.items()},
    }


# -- 3. concurrency (child process) ---------------------------------------------------


class LagRecorder(SyncHandler):
    """Records, per delta, handler receipt minus the server's send stamp (the delta's text).

    One per stream; also keeps the stream's first and last send stamps (when it was open).
    A ``SyncHandler``: ``handle``, ``handle_batch`` and ``handle_nowait`` all record.
    """

    def __init__(self, lags: array.array[float], stamps: array.array[float] | None = None) -> None:
        from sluiceway.engine import Delta

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


def child_concurrency(
    url: str,
    streams: int,
    rate: int,
    seconds: float,
    ramp: float = 1.0,
    gc_mode: str = "tuned",
    max_starting: int | None | str = "default",
    handler: str = "direct",
    shape: str = "steps",
) -> dict[str, Any]:
    """*streams* stream_steps at *rate* deltas/s for *seconds*, arriving over *ramp* seconds.

    *gc_mode* ``tuned``: ``sluiceway.tune_gc()`` after start-up (a warm-up stream
    included), as docs/python_api.md recommends; ``default``: CPython's settings.
    *max_starting*: the provider's ``max_starting`` (None: no limit; ``"default"``: its default).
    *handler* ``direct``: each stream's lag recorder has ``handle_nowait`` (deltas reach it in
    the step's task); ``actor``: it has not (every delta wakes its actor).
    *shape* ``steps``: independent ``stream_step``s, a recorder each; ``group``: the sub-steps
    of one ``stream_group`` (a composite step, as ``parallel_claude`` runs them), whose one
    handler hands each event to its stream's recorder.
    """
    import gc
    import random

    from sluiceway.engine import HandlerConsumer, Response, RunContext, stream_group, stream_step
    from sluiceway.providers import AnthropicProvider

    import sluiceway

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, streams * 2 + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    per_stream = int(rate * seconds)
    model = f"fake:text?deltas={per_stream}&delay_ms={1000 // rate}&stamp=1"
    lags: array.array[float] = array.array("d")
    stamps: array.array[float] = array.array("d")
    recorder = {"direct": LagRecorder, "actor": ActorLagRecorder}[handler]
    recorders = [recorder(lags, stamps) for _ in range(streams)]
    failures: list[str] = []
    full_collections: list[tuple[float, float]] = []  # (start, seconds), gc.callbacks
    cpu_marks: list[tuple[float, float]] = []  # (monotonic, process CPU), every 0.25 s
    rss_before = _rss_now()

    def on_gc(phase: str, info: dict[str, Any], begun: list[float] = [0.0]) -> None:  # noqa: B006
        if info["generation"] == 2:
            if phase == "start":
                begun[0] = time.monotonic()
            else:
                full_collections.append((begun[0], time.monotonic() - begun[0]))

    async def main() -> dict[str, Any]:
        # the provider makes its own SDK clients (at most 64 open streams on each: see AnthropicProvider)
        limit = {} if max_starting == "default" else {"max_starting": max_starting}
        provider = AnthropicProvider(api_key="sk-bench", base_url=url, max_tokens=64, **limit)
        run = RunContext.start("bench")
        rng = random.Random(6)
        await stream_step(  # warm-up: the SDK builds its lazy schemas on the first request
            run=run, path="warm-up", provider=provider, request=_request("fake:text?deltas=3"), consumers=[]
        )
        if gc_mode == "tuned":
            sluiceway.tune_gc()
        gc.callbacks.append(on_gc)

        async def one(i: int, sub: Any = None) -> None:
            await trio.sleep(rng.random() * ramp)  # arrivals spread over the ramp
            recorders[i].started = time.monotonic()
            try:
                await stream_step(
                    run=run, path=f"s[{i}]", provider=provider, request=_request(model),
                    consumers=[HandlerConsumer(recorders[i], name="lag") if sub is None else sub()],
                )
            except Exception as exc:
                failures.append(repr(exc))

        async def body(sub: Any) -> Any:
            async with trio.open_nursery() as nursery:
                for i in range(streams):
                    nursery.start_soon(one, i, sub)
            return Response()

        async def sample_cpu() -> None:
            while True:
                cpu_marks.append((time.monotonic(), _cpu()))
                await trio.sleep(0.25)

        cpu0 = _cpu()
        t0 = started[0] = time.monotonic()
        async with trio.open_nursery() as outer:
            outer.start_soon(sample_cpu)
            if shape == "group":
                await stream_group(
                    run=run, path="g", consumers=[HandlerConsumer(GroupLagRecorder(recorders), name="lag")],
                    body=body, step_type="parallel_claude", concurrency=streams,
                )
            else:
                async with trio.open_nursery() as nursery:
                    for i in range(streams):
                        nursery.start_soon(one, i)
            outer.cancel_scope.cancel()
        wall = time.monotonic() - t0
        cpu = _cpu() - cpu0
        cpu_marks.append((time.monotonic(), _cpu()))
        gc.callbacks.remove(on_gc)
        clients = len(provider._clients)
        provider_limit[0] = provider.max_starting
        await provider.aclose()
        return {"wall_s": wall, "cpu_s": cpu, "sdk_clients": clients, "t0_monotonic": t0}

    started = [0.0]
    provider_limit: list[int | None] = [None]
    out = trio.run(main)
    t0 = started[0]
    # per second of the run (by send time): p99 lag, to tell the start-up from the rest
    buckets: dict[int, list[float]] = {}
    for sent, lag in zip(stamps, lags, strict=True):
        buckets.setdefault(int(sent - t0), []).append(lag)
    timeline = {str(k): round(sorted(v)[min(len(v) - 1, int(0.99 * len(v)))] * 1e3, 1) for k, v in sorted(buckets.items())}
    # the window in which all streams were open: from the last first delta to the first last one
    firsts = [r.first for r in recorders if r.first is not None]
    lasts = [r.last for r in recorders if r.last is not None]
    all_open = (max(firsts), min(lasts)) if firsts and len(firsts) == streams else (t0, t0)
    window = sorted(lag for sent, lag in zip(stamps, lags, strict=True) if all_open[0] <= sent <= all_open[1])
    before = sorted(lag for sent, lag in zip(stamps, lags, strict=True) if sent < all_open[0])
    after = sorted(lag for sent, lag in zip(stamps, lags, strict=True) if sent > all_open[1])

    def mark_at(t: float) -> tuple[float, float]:
        """The CPU sample nearest *t*: (its time, the CPU seconds then)."""
        return min(cpu_marks, key=lambda m: abs(m[0] - t)) if cpu_marks else (t, 0.0)

    (open_from, cpu_from), (open_to, cpu_to) = mark_at(all_open[0]), mark_at(all_open[1])
    open_wall = open_to - open_from
    ttfts = sorted(
        r.first_receipt - r.started for r in recorders if r.first_receipt is not None and r.started is not None
    )
    ordered = sorted(lags)
    n = len(ordered)
    out.update(
        streams=streams,
        rate=rate,
        seconds=seconds,
        ramp=ramp,
        gc_mode=gc_mode,
        max_starting=provider_limit[0],
        handler=handler,
        shape=shape,
        first_delta_ms={  # per stream: its step started -> its first delta at the handler
            "p50": _ms(_pct(ttfts, 0.50)),
            "p99": _ms(_pct(ttfts, 0.99)),
            "max": ttfts[-1] * 1e3 if ttfts else None,
        },
        events=n,
        expected_events=streams * per_stream,
        failures=len(failures),
        failure_sample=failures[:3],
        lag_ms={
            "p50": _ms(_pct(ordered, 0.50)),
            "p99": _ms(_pct(ordered, 0.99)),
            "max": ordered[-1] * 1e3 if n else None,
        },
        all_open={
            "from_s": all_open[0] - t0,
            "to_s": all_open[1] - t0,
            "events": len(window),
            "p50_ms": _ms(_pct(window, 0.50)),
            "p99_ms": _ms(_pct(window, 0.99)),
            "cpu_utilisation": (cpu_to - cpu_from) / open_wall if open_wall > 0 else None,
        },
        start_up={
            "events": len(before),
            "p50_ms": _ms(_pct(before, 0.50)),
            "p99_ms": _ms(_pct(before, 0.99)),
            "cpu_s": cpu_from - mark_at(t0)[1],
        },
        wind_down={  # from the first stream's last delta to the end: the streams ending
            "events": len(after),
            "p50_ms": _ms(_pct(after, 0.50)),
            "p99_ms": _ms(_pct(after, 0.99)),
            "seconds": cpu_marks[-1][0] - open_to if cpu_marks else None,
            "cpu_s": cpu_marks[-1][1] - cpu_to if cpu_marks else None,
        },
        full_collections=[{"at_s": round(at - t0, 2), "ms": round(d * 1e3, 1)} for at, d in full_collections],
        p99_lag_ms_by_second=timeline,
        load_average=os.getloadavg(),
        cpu_s_per_1000_events=out["cpu_s"] / n * 1000 if n else None,
        rss_before_mb=rss_before / 2**20,
        peak_rss_mb=_peak_rss() / 2**20,
    )
    return out


def _concurrency_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run's figures, each the median over *runs* (``runs`` keeps every one)."""

    def med(get: Callable[[dict[str, Any]], Any]) -> Any:
        values = [get(r) for r in runs if get(r) is not None]
        return statistics.median(values) if values else None

    out = dict(runs[0])  # shape, sizes and the first run's timeline
    for part in ("lag_ms", "all_open", "start_up", "wind_down", "first_delta_ms"):
        out[part] = {k: med(lambda r, part=part, k=k: r[part][k]) for k in runs[0][part]}
    out["full_collections"] = max((r["full_collections"] for r in runs), key=len)  # the worst run's
    for key in ("cpu_s_per_1000_events", "server_cpu_s_per_1000_events", "cpu_s", "wall_s"):
        out[key] = med(lambda r, key=key: r.get(key))
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["failures"] = sum(r["failures"] for r in runs)
    out["events"] = min(r["events"] for r in runs)
    out["reps"] = len(runs)
    out["runs"] = runs
    return out


def _pct(ordered: Sequence[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _reset_peak() -> None:
    """Reset this process's peak RSS (Linux: VmHWM), so imports' transient peak is not counted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _hwm() -> int | None:
    """This process's peak RSS since the last ``_reset_peak`` (Linux VmHWM), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- 4. backpressure memory (child process) --------------------------------------------


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


def child_backpressure(policy: str, n: int) -> dict[str, Any]:
    import trio.testing
    from sluiceway.engine import HandlerConsumer, RunContext, stream_step

    async def main(n: int) -> dict[str, Any]:
        handler = SlowHandler()
        t0 = time.perf_counter()
        response = await stream_step(
            run=RunContext.start("bench"), path="bench", provider=FastProvider(n), request=_request("bench"),
            consumers=[HandlerConsumer(handler, name="slow", policy=policy), HandlerConsumer(_buffer_handler(), name="buffer")],  # type: ignore[arg-type]
        )
        return {
            "text_bytes": len(response.text.encode()),
            "delta_count": response.metrics.delta_count,
            "handler_batches_events": handler.deltas,
            "virtual_s": trio.current_time(),
            "real_s": time.perf_counter() - t0,
            "backpressure_wait_virtual_s": response.metrics.backpressure_wait,
        }

    # warm up (imports, caches) on a small stream, so the baseline holds them
    trio.run(main, 1000, clock=trio.testing.MockClock(autojump_threshold=0))
    gc.collect()
    peak_before = _peak_rss()
    _reset_peak()
    rss_before = _rss_now()
    out = trio.run(main, n, clock=trio.testing.MockClock(autojump_threshold=0))
    peak = _hwm() or _peak_rss()
    out.update(
        policy=policy,
        deltas=n,
        rss_before_mb=rss_before / 2**20,
        peak_rss_mb=peak / 2**20,
        peak_rss_before_run_mb=peak_before / 2**20,
        peak_source="VmHWM after clear_refs" if _hwm() else "ru_maxrss",
        beyond_text_mb=(peak - rss_before - out["text_bytes"]) / 2**20,
    )
    return out


# -- 5. hop cost -------------------------------------------------------------------------


class NoOpDirectHandler(NoOpHandler):
    """``NoOpHandler`` with ``handle_nowait``: takes events in the sender's task while its actor is parked."""

    def handle_nowait(self, event: Any) -> None:
        pass


async def _hop(n_handlers: int, events: int, direct: bool = False) -> float:
    from sluiceway.engine import Delta
    from sluiceway.engine._actors import handler_actor
    from sluiceway.engine._channel import open_event_channel
    from sluiceway.engine._tee import Outlet, Tee

    outlets = []
    receives = []
    for _ in range(n_handlers):
        send, receive = open_event_channel(64)  # what wire_consumers gives a handler
        outlet = Outlet(send, name="noop")
        outlet.actor = True
        outlets.append(outlet)
        receives.append(receive)
    tee = Tee(outlets)
    batch = [
        Delta(run_id="bench", step="bench", attempt=1, seq=i, at=0.0, content="tok ", index=0) for i in range(1000)
    ]

    def fail(error: Any) -> None:
        raise error

    async with trio.open_nursery() as nursery:
        for receive, outlet in zip(receives, outlets, strict=True):
            handler = NoOpDirectHandler() if direct else NoOpHandler()
            nursery.start_soon(lambda r=receive, o=outlet, h=handler: handler_actor(r, h, o, name="noop", fail=fail))
        offer, send_from = tee.offer, tee.send_from
        start = time.perf_counter()
        for i in range(events):  # as the step delivers a delta: offer, awaiting only when an outlet is full
            event = batch[i % 1000]
            rest = offer(event)
            if rest >= 0:
                await send_from(event, rest)
        for outlet in outlets:
            outlet.send.close()
    return (time.perf_counter() - start) / events * 1e6


def _hops(sizes: dict[str, Any]) -> dict[str, Any]:
    runs: dict[bool, dict[int, list[float]]] = {False: {1: [], 2: [], 4: []}, True: {1: [], 2: [], 4: []}}
    for _ in range(max(sizes["reps"], 5) if sizes["reps"] > 1 else 1):
        for direct, by_n in runs.items():  # alternating: both kinds see the same machine
            for n in by_n:
                gc.collect()
                by_n[n].append(trio.run(_hop, n, sizes["hop_events"], direct))
    return {
        "events": sizes["hop_events"],
        "us_per_event": {str(n): statistics.median(v) for n, v in runs[False].items()},
        "all": {str(n): v for n, v in runs[False].items()},
        "us_per_event_direct": {str(n): statistics.median(v) for n, v in runs[True].items()},
        "all_direct": {str(n): v for n, v in runs[True].items()},
    }


# -- orchestration -----------------------------------------------------------------------


def _start_child(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "bench", "--child", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish_child(proc: subprocess.Popen[str], timeout: float = 240) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {proc.args} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _child(args: list[str], timeout: float = 240) -> dict[str, Any]:
    return _finish_child(_start_child(args), timeout)


def _machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for dist in ("trio", "anthropic", "httpx2", "httpcore2", "attrs", "sluiceway"):
        try:
            versions[dist] = version(dist)
        except Exception:
            versions[dist] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _ms_pair(d: dict[str, Any], suffix: str = "") -> str:
    """``"p50 / p99 ms"`` of *d* (keys ``p50``/``p99``, or with *suffix*: ``p50_ms``/``p99_ms``)."""
    return f"{_fmt(d['p50' + suffix])} / {_fmt(d['p99' + suffix])} ms"


SECTIONS = ("throughput", "concurrency", "backpressure", "hop")


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table (the sections that ran)."""
    ok = lambda good: "yes" if good else "**no**"  # noqa: E731
    rows: list[tuple[str, str, str]] = []
    if "throughput" in results:
        rows += _throughput_rows(results["throughput"], ok)
    if "concurrency" in results:
        rows += _concurrency_rows(results["concurrency"], ok)
    if "backpressure" in results:
        bp = results["backpressure"]
        for policy in ("block", "coalesce"):
            b = bp[policy]
            rows.append(
                (
                    f"backpressure {b['deltas']:,} deltas, {policy}: peak RSS growth beyond the text",
                    f"{b['beyond_text_mb']:.1f} MB (text {b['text_bytes'] / 2**20:.1f} MB)",
                    f"<= 20 MB: {ok(b['beyond_text_mb'] <= 20)}",
                )
            )
    if "hop" in results:
        for key, title in (
            ("us_per_event", "hop: tee -> N actors, N = 1 / 2 / 4"),
            ("us_per_event_direct", "hop: tee -> N handlers with `handle_nowait`, N = 1 / 2 / 4"),
        ):
            hop = results["hop"][key]
            rows.append((title, " / ".join(f"{hop[k]:.2f}" for k in ("1", "2", "4")) + " µs/event", ""))
    lines = ["| Measure | Result | Target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c_} |" for a, b, c_ in rows]
    return "\n".join(lines)


def _throughput_rows(t: dict[str, Any], ok: Callable[[bool], str]) -> list[tuple[str, str, str]]:
    eps = t["events_per_s"]
    ttft = t["ttft_ms"]
    return [
        ("(a) SDK `create(stream=True)` loop", f"{eps['a']:,.0f} events/s", ""),
        ("(b) SDK `messages.stream()` helper", f"{eps['b']:,.0f} events/s", ""),
        ("(c) sluiceway end to end (buffer + no-op)", f"{eps['c']:,.0f} events/s", ""),
        ("(d) raw HTTP + SSE split + json.loads", f"{eps['d']:,.0f} events/s", ""),
        ("(c)/(a)", f"{t['ratio_c_a']:.2f}x", f">= 1.0: {ok(t['ratio_c_a'] >= 1.0)} (aim 1.5)"),
        ("(c)/(b), (c)/(d)", f"{t['ratio_c_b']:.2f}x, {t['ratio_c_d']:.2f}x", ""),
        (
            "TTFT added, (c) - (a), median",
            f"{ttft['added_median']:+.3f} ms (a: {ttft['a_median']:.3f} ms)",
            f"<= 0.3 ms: {ok(ttft['added_median'] <= 0.3)}",
        ),
        (
            "CPU per 3-delta call (request to close), (a) / (c), median",
            f"{t['call_cpu_ms']['a']:.2f} / {t['call_cpu_ms']['c']:.2f} ms",
            "",
        ),
    ]


def _collections(pauses: list[dict[str, Any]], noun: str = "") -> str:
    """How many full collections (then *noun*), and the longest."""
    return f"{len(pauses)}{noun}" + (f" (longest {max(p['ms'] for p in pauses):.0f} ms)" if pauses else "")


def _concurrency_rows(c: dict[str, Any], ok: Callable[[bool], str]) -> list[tuple[str, str, str]]:
    n = f"{c['streams']:,}"
    window = c["all_open"]
    start = c["start_up"]
    pauses = c["full_collections"]
    rows = [
        (
            f"{n} streams x {c['rate']}/s, `tune_gc()` ({c['reps']} runs, medians): lag p50 / p99, all deltas",
            _ms_pair(c["lag_ms"]),
            f"p99 <= 50 ms: {ok((c['lag_ms']['p99'] or 1e9) <= 50)}",
        ),
        (
            f"... while all {n} streams were open",
            f"{_ms_pair(window, '_ms')} ({window['from_s']:.1f}-{window['to_s']:.1f} s, "
            f"{window['events']:,} deltas); client CPU {_fmt(window['cpu_utilisation'], '.2f')} of a core",
            f"p99 <= 50 ms: {ok((window['p99_ms'] or 1e9) <= 50)}",
        ),
        (
            f"... start-up: {n} requests in {c['ramp']:g} s",
            f"{_ms_pair(start, '_ms')} ({start['events']:,} deltas before all were "
            f"open); {start['cpu_s']:.2f} s of CPU; a step's first delta after "
            f"{_ms_pair(c['first_delta_ms'])} (p50 / p99)",
            "",
        ),
        (
            f"... wind-down: {n} streams ending",
            f"{_ms_pair(c['wind_down'], '_ms')} ({c['wind_down']['events']:,} deltas after the first stream "
            f"ended); {_fmt(c['wind_down']['cpu_s'], '.2f')} s of CPU in {_fmt(c['wind_down']['seconds'], '.1f')} s",
            "",
        ),
        (
            "... full GC collections in a run (the most in any run)",
            _collections(pauses),
            "",
        ),
    ]
    # the single comparison runs: (key in results, row title, row value)
    single: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
        (
            "actor_only",
            f"{n} streams, the lag recorder without `handle_nowait` (1 run, mid-series): all deltas / "
            "while all open / client CPU per 1,000 events",
            lambda r: f"{_ms_pair(r['lag_ms'])}; {_ms_pair(r['all_open'], '_ms')}; "
            f"{_fmt(r['cpu_s_per_1000_events'], '.3f')} s",
        ),
        (
            "group",
            f"{n} streams as the sub-steps of one composite step (1 run): all deltas / while all open / "
            "client CPU per 1,000 events",
            lambda r: f"{_ms_pair(r['lag_ms'])}; {_ms_pair(r['all_open'], '_ms')}; "
            f"{_fmt(r['cpu_s_per_1000_events'], '.3f')} s",
        ),
        (
            "default_gc",
            f"{n} streams, CPython's default GC (1 run): all deltas / while all open",
            lambda r: f"{_ms_pair(r['lag_ms'])}; {_ms_pair(r['all_open'], '_ms')}; "
            f"{_collections(r['full_collections'], ' full collections')}",
        ),
        (
            "no_start_limit",
            f"{n} streams, `tune_gc()`, `max_starting=None` (1 run): all deltas / start-up / first delta",
            lambda r: f"{_ms_pair(r['lag_ms'])}; {_ms_pair(r['start_up'], '_ms')}; {_ms_pair(r['first_delta_ms'])}",
        ),
    ]
    rows += [(title, value(c[key]), "") for key, title, value in single if c.get(key) is not None]
    rows += [
        (
            f"{n} streams: client CPU per 1,000 events",
            f"{_fmt(c['cpu_s_per_1000_events'], '.3f')} s (server, own process: "
            f"{_fmt(c.get('server_cpu_s_per_1000_events'), '.3f')} s)",
            "",
        ),
        (
            f"{n} streams: peak RSS",
            f"{c['peak_rss_mb']:.0f} MB",
            f"<= 300 MB: {ok(c['peak_rss_mb'] <= 300)}",
        ),
    ]
    return rows


def _limit_arg(arg: str) -> int | None | str:
    """A child's ``max_starting`` argument: ``default``, ``none`` or a number."""
    return arg if arg == "default" else None if arg == "none" else int(arg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="sluiceway benchmarks (issue 6)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, numbers mean nothing")
    parser.add_argument("--out", default=str(BENCH / "results.json"), help="where to write the results JSON")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only these sections (repeatable); default: all"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "concurrency":
            out = child_concurrency(
                rest[0], int(rest[1]), int(rest[2]), float(rest[3]), float(rest[4]), rest[5], _limit_arg(rest[6]),
                rest[7], rest[8],
            )
        elif kind == "backpressure":
            out = child_backpressure(rest[0], int(rest[1]))
        else:
            raise SystemExit(f"unknown child {kind}")
        print(json.dumps(out))
        return 0

    sizes = QUICK if args.quick else FULL
    began = time.perf_counter()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m bench" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "machine": _machine(),
        "sizes": sizes,
    }
    print(f"sluiceway bench ({'quick' if args.quick else 'full'}) on {results['machine']['cpu']}, "
          f"{results['machine']['cores']} cores", flush=True)
    only = set(args.only or SECTIONS)
    backpressure = None
    if "backpressure" in only:  # virtual time, own processes: runs alongside throughput's warm-up
        backpressure = {
            p: _start_child(["backpressure", p, str(sizes["bp_deltas"])]) for p in ("block", "coalesce")
        }
        print("4. memory under backpressure (in two child processes) ...", flush=True)
    with Server() as server:
        if backpressure is not None:
            results["backpressure"] = {p: _finish_child(proc) for p, proc in backpressure.items()}
        if "throughput" in only:
            print("1-2. throughput and time to first token ...", flush=True)
            results["throughput"] = trio.run(_throughput_and_ttft, server.url, sizes)
        if "concurrency" in only:
            print(f"3. {sizes['streams']} concurrent streams for {sizes['seconds']} s ...", flush=True)
            runs: dict[str, list[dict[str, Any]]] = {
                "tuned": [], "default": [], "unlimited": [], "actor": [], "group": []
            }
            # the documented set-up (tune_gc, the provider's defaults, a handler with handle_nowait)
            # conc_reps times; between them, once with the handler on its actor only; then CPython's
            # default GC once, once with no start-up limit (max_starting=None), and once as the
            # sub-steps of one composite step
            tuned = [("tuned", "tuned", "default", "direct", "steps")] * sizes["conc_reps"]
            middle = len(tuned) // 2
            plan = [
                *tuned[:middle], ("actor", "tuned", "default", "actor", "steps"), *tuned[middle:],
                ("default", "default", "default", "direct", "steps"),
                ("unlimited", "tuned", "none", "direct", "steps"),
                ("group", "tuned", "default", "direct", "group"),
            ]
            for key, gc_mode, starting, handler, shape in plan:
                before = server.report()
                run = _child(
                    ["concurrency", server.url, str(sizes["streams"]), str(sizes["rate"]), str(sizes["seconds"]),
                     str(sizes["ramp"]), gc_mode, starting, handler, shape]
                )
                after = server.report()
                server_cpu = after["cpu_s"] - before["cpu_s"]
                run["server_cpu_s"] = server_cpu
                # the server's pacing, on the run's seconds (as p99_lag_ms_by_second): a tick that ran
                # late sends its deltas in a burst, which the client then works through
                start = int(run["t0_monotonic"])
                run["server_late_ms_by_second"] = {
                    str(int(k) - start): v for k, v in after["late_ms"].items()
                    if start <= int(k) <= start + run["wall_s"] + 1
                }
                if run["events"]:
                    run["server_cpu_s_per_1000_events"] = server_cpu / run["events"] * 1000
                runs[key].append(run)
            results["concurrency"] = _concurrency_medians(runs["tuned"])
            results["concurrency"]["default_gc"] = runs["default"][0]
            results["concurrency"]["no_start_limit"] = runs["unlimited"][0]
            results["concurrency"]["actor_only"] = runs["actor"][0]
            results["concurrency"]["group"] = runs["group"][0]
    if "hop" in only:
        print("5. hop cost ...", flush=True)
        results["hop"] = _hops(sizes)
    results["total_s"] = time.perf_counter() - began
    text = table(results)
    results["table"] = text
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(text)
    print(f"\n{results['command']}: {results['total_s']:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
