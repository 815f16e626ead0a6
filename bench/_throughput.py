"""1. Throughput on one stream: the SDK's two ways, sluiceway end to end, and the floor.

(a) a bare loop over the SDK's ``create(stream=True)``; (b) the SDK's
``messages.stream()`` helper; (c) sluiceway: ``AnthropicProvider`` (on the same
SDK client) -> ``stream_step`` -> ``buffer`` + a no-op handler; (d) raw HTTP
bytes, a minimal SSE split and ``json.loads`` per event. Each repetition runs
the four in turn, so a slow phase of the machine hits all of them; the figures
are medians. The same warm clients then serve time to first token (``_ttft``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from . import _ttft
from ._common import FirstDelta, bench_request, buffer_handler, sdk_client
from ._settings import Sizes

#: One variant: streams the fake scenario *model*; returns (deltas seen, first delta's perf_counter).
Variant = Callable[[str], Awaitable[tuple[int, float | None]]]


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


async def run_c(provider: Any, model: str) -> tuple[int, float | None]:
    """(c) sluiceway: provider -> stream_step (accumulation, metrics) -> buffer + no-op handlers."""
    from sluiceway.engine import HandlerConsumer, RunContext, stream_step

    first = FirstDelta()
    consumers = [
        HandlerConsumer(buffer_handler(), name="buffer"),
        HandlerConsumer(first, name="noop"),
    ]
    response = await stream_step(
        run=RunContext.start("bench"), path="bench", provider=provider, request=bench_request(model), consumers=consumers
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


@contextlib.asynccontextmanager
async def open_variants(url: str) -> AsyncIterator[dict[str, Variant]]:
    """The four variants on one SDK client and one raw HTTP client (closed on exit)."""
    import httpx2
    from sluiceway.providers import AnthropicProvider

    client = sdk_client(url)
    provider = AnthropicProvider(client=client, max_tokens=64)
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(60.0))
    try:
        yield {
            "a": lambda m: run_a(client, m),
            "b": lambda m: run_b(client, m),
            "c": lambda m: run_c(provider, m),
            "d": lambda m: run_d(http, url, m),
        }
    finally:
        await client.close()
        await http.aclose()


async def _rates(variants: dict[str, Variant], sizes: Sizes) -> dict[str, list[float]]:
    """Events per second of each variant, per repetition (the variants in turn each time)."""
    deltas = sizes.deltas
    model = f"fake:text?deltas={deltas}"
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(sizes.reps):
        for key, fn in variants.items():
            gc.collect()
            start = time.perf_counter()
            n, _ = await fn(model)
            elapsed = time.perf_counter() - start
            if n != deltas:
                raise RuntimeError(f"variant {key}: {n} deltas, expected {deltas}")
            rates[key].append(n / elapsed)
    return rates


async def measure(url: str, sizes: Sizes) -> dict[str, Any]:
    """Throughput (``results["throughput"]``), then time to first token and CPU per call."""
    async with open_variants(url) as variants:
        for fn in variants.values():  # warm: connections, imports, caches
            await fn("fake:text?deltas=50")
        rates = await _rates(variants, sizes)
        first_token = await _ttft.measure(variants, sizes.ttft_reps)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "deltas": sizes.deltas,
        "reps": sizes.reps,
        "events_per_s": med,
        "events_per_s_all": rates,
        "ratio_c_a": med["c"] / med["a"],
        "ratio_c_b": med["c"] / med["b"],
        "ratio_c_d": med["c"] / med["d"],
        **first_token,
    }
