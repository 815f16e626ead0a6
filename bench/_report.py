"""The report: the Markdown table of the sections that ran, the machine, and results.json."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: One table row: measure, result, target.
Row = tuple[str, str, str]


def machine() -> dict[str, Any]:
    """The CPU, core count, Python and the versions of the packages the figures depend on."""
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
    versions: dict[str, str | None] = {}
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


def write_results(results: dict[str, Any], out: str | Path) -> str:
    """Add the tables to *results*, write them to *out* as JSON; return the full table."""
    text = table(results)
    results["table"] = text
    results["headline"] = headline(results)
    Path(out).write_text(json.dumps(results, indent=2) + "\n")
    return text


def _ok(good: bool) -> str:
    return "yes" if good else "**no**"


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _ms_pair(d: dict[str, Any], suffix: str = "") -> str:
    """``"p50 / p99 ms"`` of *d* (keys ``p50``/``p99``, or with *suffix*: ``p50_ms``/``p99_ms``)."""
    return f"{_fmt(d['p50' + suffix])} / {_fmt(d['p99' + suffix])} ms"


def _collections(pauses: list[dict[str, Any]], noun: str = "") -> str:
    """How many full collections (then *noun*), and the longest."""
    return f"{len(pauses)}{noun}" + (f" (longest {max(p['ms'] for p in pauses):.0f} ms)" if pauses else "")


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table (the sections that ran)."""
    rows: list[Row] = []
    if "throughput" in results:
        rows += _throughput_rows(results["throughput"])
    if "concurrency" in results:
        rows += _concurrency_rows(results["concurrency"])
        rows += _variant_rows(results["concurrency"])
        rows += _cost_rows(results["concurrency"])
    if "backpressure" in results:
        rows += _backpressure_rows(results["backpressure"])
    if "hop" in results:
        rows += _hop_rows(results["hop"])
    if "aio" in results:
        rows += _aio_rows(results["aio"])
    if "web" in results:
        web = results["web"]
        rows.append((
            "web view: events/s with no SSE client / with one that stopped reading (median)",
            f"{web['events_per_s_no_client']:,} / {web['events_per_s_stalled_client']:,} "
            f"({web['ratio_stalled_to_none']:.2f}x)",
            f">= 0.9x: {_ok(web['ratio_stalled_to_none'] >= 0.9)}",
        ))
    return _markdown(rows)


def headline(results: dict[str, Any]) -> str:
    """The headline measures as a short Markdown table (the README's; the sections that ran)."""
    rows: list[Row] = []
    if "throughput" in results:
        t = results["throughput"]
        eps, added = t["events_per_s"], t["ttft_ms"]["added_median"]
        rows += [
            (
                "Throughput, one stream: sluiceway end to end / the SDK's `create(stream=True)` loop",
                f"{eps['c']:,.0f} / {eps['a']:,.0f} events/s ({t['ratio_c_a']:.2f}x)",
                f">= 1.0x: {_ok(t['ratio_c_a'] >= 1.0)}",
            ),
            ("Time to first token added over the SDK, median", f"{added:+.3f} ms", f"<= 0.3 ms: {_ok(added <= 0.3)}"),
        ]
    if "concurrency" in results:
        c = results["concurrency"]
        n, p99 = f"{c['streams']:,}", c["lag_ms"]["p99"]
        rows += [
            (
                f"{n} streams x {c['rate']} deltas/s: delivery lag p50 / p99 (median of {c['reps']} runs)",
                _ms_pair(c["lag_ms"]),
                f"p99 <= 50 ms: {_ok((p99 or 1e9) <= 50)}",
            ),
            (
                f"{n} streams: client CPU per 1,000 events / peak RSS",
                f"{_fmt(c['cpu_s_per_1000_events'], '.3f')} s / {c['peak_rss_mb']:.0f} MB",
                f"RSS <= 300 MB: {_ok(c['peak_rss_mb'] <= 300)}",
            ),
        ]
    if "backpressure" in results:
        block, coalesce = (results["backpressure"][p] for p in ("block", "coalesce"))
        worst = max(block["beyond_text_mb"], coalesce["beyond_text_mb"])
        rows.append(
            (
                f"Backpressure, {block['deltas']:,} deltas: peak RSS beyond the text, block / coalesce",
                f"{block['beyond_text_mb']:.1f} / {coalesce['beyond_text_mb']:.1f} MB",
                f"<= 20 MB: {_ok(worst <= 20)}",
            )
        )
    if "hop" in results:
        direct = results["hop"]["us_per_event_direct"]
        rows.append(("Hop, tee -> 1 / 4 handlers (with `handle_nowait`)", f"{direct['1']:.2f} / {direct['4']:.2f} µs/event", ""))
    return _markdown(rows)


def _markdown(rows: list[Row]) -> str:
    lines = ["| Measure | Result | Target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def _throughput_rows(t: dict[str, Any]) -> list[Row]:
    eps = t["events_per_s"]
    ttft = t["ttft_ms"]
    return [
        ("(a) SDK `create(stream=True)` loop", f"{eps['a']:,.0f} events/s", ""),
        ("(b) SDK `messages.stream()` helper", f"{eps['b']:,.0f} events/s", ""),
        ("(c) sluiceway end to end (buffer + no-op)", f"{eps['c']:,.0f} events/s", ""),
        ("(d) raw HTTP + SSE split + json.loads", f"{eps['d']:,.0f} events/s", ""),
        ("(c)/(a)", f"{t['ratio_c_a']:.2f}x", f">= 1.0: {_ok(t['ratio_c_a'] >= 1.0)} (aim 1.5)"),
        ("(c)/(b), (c)/(d)", f"{t['ratio_c_b']:.2f}x, {t['ratio_c_d']:.2f}x", ""),
        (
            "TTFT added, (c) - (a), median",
            f"{ttft['added_median']:+.3f} ms (a: {ttft['a_median']:.3f} ms)",
            f"<= 0.3 ms: {_ok(ttft['added_median'] <= 0.3)}",
        ),
        (
            "CPU per 3-delta call (request to close), (a) / (c), median",
            f"{t['call_cpu_ms']['a']:.2f} / {t['call_cpu_ms']['c']:.2f} ms",
            "",
        ),
    ]


def _concurrency_rows(c: dict[str, Any]) -> list[Row]:
    """The documented set-up's rows: all deltas, then each phase of a run."""
    n = f"{c['streams']:,}"
    window = c["all_open"]
    start = c["start_up"]
    wind_down = c["wind_down"]
    return [
        (
            f"{n} streams x {c['rate']}/s, `tune_gc()` ({c['reps']} runs, medians): lag p50 / p99, all deltas",
            _ms_pair(c["lag_ms"]),
            f"p99 <= 50 ms: {_ok((c['lag_ms']['p99'] or 1e9) <= 50)}",
        ),
        (
            f"... while all {n} streams were open",
            f"{_ms_pair(window, '_ms')} ({window['from_s']:.1f}-{window['to_s']:.1f} s, "
            f"{window['events']:,} deltas); client CPU {_fmt(window['cpu_utilisation'], '.2f')} of a core",
            f"p99 <= 50 ms: {_ok((window['p99_ms'] or 1e9) <= 50)}",
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
            f"{_ms_pair(wind_down, '_ms')} ({wind_down['events']:,} deltas after the first stream "
            f"ended); {_fmt(wind_down['cpu_s'], '.2f')} s of CPU in {_fmt(wind_down['seconds'], '.1f')} s",
            "",
        ),
        ("... full GC collections in a run (the most in any run)", _collections(c["full_collections"]), ""),
    ]


def _lag_and_cpu(r: dict[str, Any]) -> str:
    return f"{_ms_pair(r['lag_ms'])}; {_ms_pair(r['all_open'], '_ms')}; {_fmt(r['cpu_s_per_1000_events'], '.3f')} s"


def _variant_rows(c: dict[str, Any]) -> list[Row]:
    """One row per variant run once (those that ran)."""
    n = f"{c['streams']:,}"
    single: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [  # (key in results, title, value)
        (
            "actor_only",
            f"{n} streams, the lag recorder without `handle_nowait` (1 run, mid-series): all deltas / "
            "while all open / client CPU per 1,000 events",
            _lag_and_cpu,
        ),
        (
            "group",
            f"{n} streams as the sub-steps of one composite step (1 run): all deltas / while all open / "
            "client CPU per 1,000 events",
            _lag_and_cpu,
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
    return [(title, value(c[key]), "") for key, title, value in single if c.get(key) is not None]


def _cost_rows(c: dict[str, Any]) -> list[Row]:
    """The documented set-up's CPU and memory."""
    n = f"{c['streams']:,}"
    return [
        (
            f"{n} streams: client CPU per 1,000 events",
            f"{_fmt(c['cpu_s_per_1000_events'], '.3f')} s (server, own process: "
            f"{_fmt(c.get('server_cpu_s_per_1000_events'), '.3f')} s)",
            "",
        ),
        (f"{n} streams: peak RSS", f"{c['peak_rss_mb']:.0f} MB", f"<= 300 MB: {_ok(c['peak_rss_mb'] <= 300)}"),
    ]


def _backpressure_rows(bp: dict[str, Any]) -> list[Row]:
    rows = []
    for policy in ("block", "coalesce"):
        b = bp[policy]
        rows.append(
            (
                f"backpressure {b['deltas']:,} deltas, {policy}: peak RSS growth beyond the text",
                f"{b['beyond_text_mb']:.1f} MB (text {b['text_bytes'] / 2**20:.1f} MB)",
                f"<= 20 MB: {_ok(b['beyond_text_mb'] <= 20)}",
            )
        )
    return rows


def _hop_rows(hop: dict[str, Any]) -> list[Row]:
    rows = []
    for key, title in (
        ("us_per_event", "hop: tee -> N actors, N = 1 / 2 / 4"),
        ("us_per_event_direct", "hop: tee -> N handlers with `handle_nowait`, N = 1 / 2 / 4"),
    ):
        rows.append((title, " / ".join(f"{hop[key][k]:.2f}" for k in ("1", "2", "4")) + " µs/event", ""))
    return rows


def _aio_rows(aio: dict[str, Any]) -> list[Row]:
    bridge = aio["bridge"]
    ratio = bridge["aio_us_per_event"] / bridge["trio_us_per_event"]
    runs = aio["slow_reader"]["runs"]
    return [
        (
            "asyncio bridge: `aio.open_run` / trio `open_run`, same stream, events/s",
            f"{bridge['aio_open_run_events_per_s']:,} / {bridge['trio_open_run_events_per_s']:,} "
            f"({ratio:.2f}x the cost per event)",
            f"<= 1.5x: {_ok(ratio <= 1.5)}",
        ),
        (
            "slow asyncio reader: events, most in flight, allocation peak",
            "; ".join(f"{r['events']:,}: {r['max_in_flight']:,}, {r['peak_alloc_kib']:,} KiB" for r in runs),
            "bounded",
        ),
    ]
