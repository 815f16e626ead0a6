"""Issue 14, item 2, live: a 200-branch ``parallel_claude`` step, ``fail_fast``, one branch's connection
dropped, live mode against the fake Messages API through ``open_run`` (default ``max_starting``).

Every sub-step that started gets exactly one terminal event, on the run's stream and at a slow
handler (10 ms an event). The default suite runs one short run; ``SLUICEWAY_LIVE_RUNS=50`` runs 50
as reported (40 deltas a branch).
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from sluiceway.engine import TERMINAL_EVENTS, Event, StepStarted
from sluiceway.specs import ClaudeOptions, ParallelClaudeStep, ParallelTask, Pipeline

import sluiceway

BRANCHES = 200
RUNS = int(os.environ.get("SLUICEWAY_LIVE_RUNS", "1"))
#: Deltas per branch: the long check (``SLUICEWAY_LIVE_RUNS`` set) streams 40, as in the report.
DELTAS = 40 if "SLUICEWAY_LIVE_RUNS" in os.environ else 6


class SlowHandler:
    """10 ms an event; counts each step's StepStarted and terminal events."""

    def __init__(self) -> None:
        self.started: set[str] = set()
        self.terminals: collections.Counter[str] = collections.Counter()
        self.closed = 0

    async def handle(self, event: Event) -> None:
        await trio.sleep(0.01)
        if isinstance(event, StepStarted):
            self.started.add(event.step)
        elif isinstance(event, TERMINAL_EVENTS):
            self.terminals[event.step] += 1

    async def aclose(self) -> None:
        self.closed += 1


def spec() -> Pipeline:
    tasks = tuple(
        ParallelTask(
            id=f"t{i}",
            prompt="hi",
            claude_options=ClaudeOptions(
                model="fake:drop?after=3&first_delay_ms=200" if i == 7 else f"fake:text?deltas={DELTAS}&delay_ms=5"
            ),
        )
        for i in range(BRANCHES)
    )
    return Pipeline(name="p", steps=(ParallelClaudeStep(name="p", prompt="x", parallel_tasks=tasks, fail_fast=True),))


async def one_run(out: Path) -> tuple[list[str], list[str], str]:
    handler = SlowHandler()
    started: set[str] = set()
    terminals: collections.Counter[str] = collections.Counter()
    async with sluiceway.open_run(spec(), mode="live", output_dir=out, handlers=[handler]) as run:
        async for event in run.events:
            if isinstance(event, StepStarted):
                started.add(event.step)
            elif isinstance(event, TERMINAL_EVENTS):
                terminals[event.step] += 1
        result = await run.result()
    assert len(started) == BRANCHES + 1 and handler.closed == 1
    on_run = sorted(s for s in started if terminals[s] != 1)
    at_handler = sorted(s for s in handler.started if handler.terminals[s] != 1)
    return on_run, at_handler, result.status


async def test_fail_fast_200_branches_live_keeps_one_terminal_per_sub_step(
    tmp_path: Path, fake_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-fake")
    bad = []
    for i in range(RUNS):
        on_run, at_handler, status = await one_run(tmp_path / str(i))
        assert status == "failed"
        if on_run or at_handler:
            bad.append((i, on_run[:5], len(on_run), at_handler[:5], len(at_handler)))
    assert bad == [], f"{len(bad)} of {RUNS} runs lost terminal events"
