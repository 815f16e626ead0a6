"""``python -m bench --quick`` runs end to end: the table and results.json keep their shape.

Tiny sizes; nothing here asserts timing (the figures of a quick run mean nothing). Also the
bench's parts that can break without changing a figure: a child's settings survive their trip
through JSON, and the hop benchmark wires its handlers with the engine's own wiring.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent

ROWS = (
    "(a) SDK `create(stream=True)` loop",
    "(b) SDK `messages.stream()` helper",
    "(c) sluiceway end to end (buffer + no-op)",
    "(d) raw HTTP + SSE split + json.loads",
    "(c)/(a)",
    "(c)/(b), (c)/(d)",
    "TTFT added, (c) - (a), median",
    "CPU per 3-delta call (request to close), (a) / (c), median",
    "10 streams x 20/s, `tune_gc()` (1 runs, medians): lag p50 / p99, all deltas",
    "... while all 10 streams were open",
    "... start-up: 10 requests in 0.05 s",
    "... wind-down: 10 streams ending",
    "... full GC collections in a run (the most in any run)",
    "10 streams, the lag recorder without `handle_nowait` (1 run, mid-series): all deltas / while all open / "
    "client CPU per 1,000 events",
    "10 streams as the sub-steps of one composite step (1 run): all deltas / while all open / "
    "client CPU per 1,000 events",
    "10 streams, CPython's default GC (1 run): all deltas / while all open",
    "10 streams, `tune_gc()`, `max_starting=None` (1 run): all deltas / start-up / first delta",
    "10 streams: client CPU per 1,000 events",
    "10 streams: peak RSS",
    "backpressure 3,000 deltas, block: peak RSS growth beyond the text",
    "backpressure 3,000 deltas, coalesce: peak RSS growth beyond the text",
    "hop: tee -> N actors, N = 1 / 2 / 4",
    "hop: tee -> N handlers with `handle_nowait`, N = 1 / 2 / 4",
    "asyncio bridge: `aio.open_run` / trio `open_run`, same stream, events/s",
    "slow asyncio reader: events, most in flight, allocation peak",
    "web view: events/s with no SSE client / with one that stopped reading (median)",
)


def test_quick_bench_prints_the_table_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,  # a hang guard: a quick run takes under a minute on an idle machine
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    start = lines.index("| Measure | Result | Target |")
    table = lines[start : start + 2 + len(ROWS)]
    assert table[1] == "|---|---|---|"
    assert [row.split(" | ")[0].removeprefix("| ") for row in table[2:]] == list(ROWS)
    assert all(row.count(" | ") == 2 and row.endswith("|") for row in table[2:])

    results = json.loads(out.read_text())
    assert results["quick"] is True and results["command"] == "python -m bench --quick"
    assert set(results["machine"]) >= {"cpu", "cores", "python", "trio", "anthropic", "httpx2"}
    assert results["machine"]["cores"] >= 1
    assert results["table"].splitlines() == table
    t = results["throughput"]
    assert t["deltas"] == 300 and set(t["events_per_s"]) == {"a", "b", "c", "d"}
    assert all(len(v) == 1 and v[0] > 0 for v in t["events_per_s_all"].values())
    assert t["ratio_c_a"] == t["events_per_s"]["c"] / t["events_per_s"]["a"]
    assert t["ttft_ms"]["reps"] == 3
    c = results["concurrency"]
    assert c["streams"] == 10 and c["failures"] == 0
    assert c["events"] == c["expected_events"] == 10 * 6  # every paced delta reached the handler
    assert c["server_cpu_s"] > 0 and c["peak_rss_mb"] > 0
    assert c["gc_mode"] == "tuned" and c["default_gc"]["gc_mode"] == "default"
    assert c["default_gc"]["events"] == c["default_gc"]["expected_events"] == 10 * 6
    assert c["sdk_clients"] == 1  # 10 streams fit one client (64 per client)
    window = c["all_open"]
    assert 0 < window["from_s"] <= window["to_s"]
    # start-up, all open, wind-down: every delta in exactly one of them
    assert window["events"] + c["start_up"]["events"] + c["wind_down"]["events"] == c["events"]
    assert c["wind_down"]["cpu_s"] >= 0 and c["wind_down"]["seconds"] >= 0
    assert isinstance(c["full_collections"], list)
    assert c["reps"] == len(c["runs"]) == 1 and c["runs"][0]["events"] == 10 * 6
    assert c["max_starting"] == 16  # the provider's default
    assert c["no_start_limit"]["max_starting"] is None and c["no_start_limit"]["events"] == 10 * 6
    assert c["handler"] == "direct" and c["actor_only"]["handler"] == "actor"
    assert c["actor_only"]["events"] == c["actor_only"]["expected_events"] == 10 * 6
    assert c["shape"] == "steps" and c["group"]["shape"] == "group"
    assert c["group"]["events"] == c["group"]["expected_events"] == 10 * 6 and c["group"]["failures"] == 0
    assert 0 < c["first_delta_ms"]["p50"] <= c["first_delta_ms"]["p99"] <= c["first_delta_ms"]["max"]
    assert set(t["call_cpu_ms"]) == {"a", "c"} and all(v > 0 for v in t["call_cpu_ms"].values())
    for policy in ("block", "coalesce"):
        b = results["backpressure"][policy]
        assert b["policy"] == policy and b["delta_count"] == 3000
        assert b["text_bytes"] == sum(len(f"tok{i} ") for i in range(3000))  # the whole text came through
    assert set(results["hop"]["us_per_event"]) == set(results["hop"]["us_per_event_direct"]) == {"1", "2", "4"}
    headline = results["headline"].splitlines()
    assert headline[:2] == ["| Measure | Result | Target |", "|---|---|---|"] and len(headline) == 2 + 6
    assert all(row.count(" | ") == 2 and row.endswith("|") for row in headline[2:])


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ``bench`` package (run from the repository root, not installed)."""
    monkeypatch.syspath_prepend(str(ROOT))
    import bench

    return bench


def test_child_settings_survive_json(bench: Any) -> None:
    from bench._settings import (
        BackpressureSettings,
        ConcurrencySettings,
        child_json,
        from_child_json,
    )

    for settings in (
        ConcurrencySettings(url="http://127.0.0.1:1", streams=3, rate=20, seconds=0.5),
        ConcurrencySettings(
            url="u", streams=1, rate=5, seconds=1.0, ramp=0.1, gc_mode="default", max_starting=None,
            handler="actor", shape="group",
        ),
        ConcurrencySettings(url="u", streams=1, rate=5, seconds=1.0, max_starting=8),
        BackpressureSettings(policy="coalesce", deltas=10),
    ):
        text = child_json(settings)
        assert json.loads(text)["kind"] == settings.kind
        assert from_child_json(text) == settings
    with pytest.raises(TypeError):
        from_child_json('{"kind": "backpressure", "policy": "block", "deltas": 1, "stray": 2}')
    with pytest.raises(ValueError, match="unknown bench child 'nope'"):
        from_child_json('{"kind": "nope"}')


def test_hop_wires_handlers_with_the_engines_wire_consumers(bench: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sluiceway.engine import HandlerConsumer
    from sluiceway.engine._wiring import wire_consumers

    from bench import _hop

    calls: list[list[Any]] = []

    async def spy(consumers: Any, run: Any) -> Any:
        calls.append(list(consumers))
        return await wire_consumers(consumers, run)

    monkeypatch.setattr(_hop, "wire_consumers", spy)
    for direct in (False, True):
        assert trio.run(_hop.hop, 2, 200, direct) > 0
    assert [len(c) for c in calls] == [2, 2]
    assert all(type(c) is HandlerConsumer for consumers in calls for c in consumers)
    assert [hasattr(consumers[0].handler, "handle_nowait") for consumers in calls] == [False, True]
