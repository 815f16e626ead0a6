"""2. Time to first token, and the CPU of each whole small call, (a) the SDK against (c) sluiceway.

3-delta streams on the warm connection, (a) and (c) alternating. One loop
measures both figures on the same calls: from just before ``create()`` /
``stream_step()`` to the first delta (the SDK event / the ``Delta`` at a
handler), and the process CPU from the request to the close (the start-up cost
per stream).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

#: The scenario of each call: three deltas.
SMALL = "fake:text?deltas=3"


async def measure(
    variants: Mapping[str, Callable[[str], Awaitable[tuple[int, float | None]]]], reps: int
) -> dict[str, Any]:
    """``ttft_ms`` and ``call_cpu_ms`` of ``results["throughput"]``, over *reps* calls of (a) and of (c)."""
    ttft: dict[str, list[float]] = {"a": [], "c": []}
    call_cpu: dict[str, list[float]] = {"a": [], "c": []}
    for _ in range(reps):
        for key in ("a", "c"):
            cpu = time.process_time()
            start = time.perf_counter()
            _, first = await variants[key](SMALL)
            call_cpu[key].append(time.process_time() - cpu)
            assert first is not None
            ttft[key].append(first - start)
    diffs = [c - a for a, c in zip(ttft["a"], ttft["c"], strict=True)]
    return {
        "ttft_ms": {
            "a_median": statistics.median(ttft["a"]) * 1e3,
            "c_median": statistics.median(ttft["c"]) * 1e3,
            "added_median": (statistics.median(ttft["c"]) - statistics.median(ttft["a"])) * 1e3,
            "added_median_of_pairs": statistics.median(diffs) * 1e3,
            "reps": reps,
        },
        "call_cpu_ms": {k: statistics.median(v) * 1e3 for k, v in call_cpu.items()},
    }
