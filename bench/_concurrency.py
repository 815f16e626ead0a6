"""3. Concurrency: the plan of runs, each in a child process (``_concurrency_child``), and their medians.

The documented set-up (``tune_gc()``, the provider's defaults, a handler with
``handle_nowait``) runs ``conc_reps`` times; between them, once with the handler
on its actor only; after them, once with CPython's default collector, once with
no start-up limit (``max_starting=None``) and once as the sub-steps of one
composite step. Around each run the fake server reports its CPU and how far its
pacing ran behind, which the run keeps on its own seconds.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

import attrs

from ._children import Server, run_child
from ._settings import ConcurrencySettings, Sizes

#: The variants, run once each: their key in ``results["concurrency"]``, and what differs
#: from the documented set-up.
VARIANTS: dict[str, dict[str, Any]] = {
    "default_gc": {"gc_mode": "default"},
    "no_start_limit": {"max_starting": None},
    "actor_only": {"handler": "actor"},
    "group": {"shape": "group"},
}


def plan(sizes: Sizes) -> list[str]:
    """The runs in order, by key: ``tuned`` (the documented set-up) or a variant's."""
    tuned = ["tuned"] * sizes.conc_reps
    middle = len(tuned) // 2
    return [*tuned[:middle], "actor_only", *tuned[middle:], "default_gc", "no_start_limit", "group"]


def measure(server: Server, sizes: Sizes) -> dict[str, Any]:
    """Every run of the plan against *server*; ``results["concurrency"]``."""
    base = ConcurrencySettings(
        url=server.url, streams=sizes.streams, rate=sizes.rate, seconds=sizes.seconds, ramp=sizes.ramp
    )
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in ("tuned", *VARIANTS)}
    for key in plan(sizes):
        runs[key].append(_one_run(server, attrs.evolve(base, **VARIANTS.get(key, {}))))
    results = medians(runs["tuned"])
    for key in VARIANTS:
        results[key] = runs[key][0]
    return results


def _one_run(server: Server, settings: ConcurrencySettings) -> dict[str, Any]:
    """One child run, with the server's CPU and pacing over it."""
    before = server.report()
    run = run_child(settings)
    after = server.report()
    server_cpu = after["cpu_s"] - before["cpu_s"]
    run["server_cpu_s"] = server_cpu
    # the server's pacing, on the run's seconds (as p99_lag_ms_by_second): a tick that ran
    # late sends its deltas in a burst, which the client then works through
    start = int(run["t0_monotonic"])
    run["server_late_ms_by_second"] = {
        str(int(k) - start): v for k, v in after["late_ms"].items() if start <= int(k) <= start + run["wall_s"] + 1
    }
    if run["events"]:
        run["server_cpu_s_per_1000_events"] = server_cpu / run["events"] * 1000
    return run


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run's figures, each the median over *runs* (``runs`` keeps every one)."""

    out = dict(runs[0])  # shape, sizes and the first run's timeline
    for part in ("lag_ms", "all_open", "start_up", "wind_down", "first_delta_ms"):
        out[part] = {k: _median(r[part][k] for r in runs) for k in runs[0][part]}
    out["full_collections"] = max((r["full_collections"] for r in runs), key=len)  # the worst run's
    for key in ("cpu_s_per_1000_events", "server_cpu_s_per_1000_events", "cpu_s", "wall_s"):
        out[key] = _median(r.get(key) for r in runs)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["failures"] = sum(r["failures"] for r in runs)
    out["events"] = min(r["events"] for r in runs)
    out["reps"] = len(runs)
    out["runs"] = runs
    return out


def _median(values: Iterable[Any]) -> Any:
    """The median of the *values* that are not ``None`` (``None`` if none are)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
