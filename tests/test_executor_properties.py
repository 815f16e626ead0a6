"""Generated pipelines through ``open_run``: the run's whole event stream keeps the
DESIGN.md invariants, steps run in order, a failure stops the run, files agree."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.engine import Delta, Done, Event, Failed, RunFinished, RunStarted, StepStarted
from sluiceway.specs import ClaudeStep, MockSpec, Pipeline, PythonStep

import sluiceway
from sluiceway.testing import check_invariants

WORDS = st.lists(st.sampled_from(["alpha", "beta", "gamma", "δelta", "ep si", "{x}", "\n"]), min_size=1, max_size=12)


async def count_deltas(ctx: Any) -> int:
    """A passthrough follower: counts the upstream's deltas."""
    n = 0
    async for event in ctx.events:
        if isinstance(event, Delta):
            n += 1
    return n


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[Pipeline, int | None, set[int]]:
    count = draw(st.integers(1, 4))
    failing = draw(st.one_of(st.none(), st.integers(0, count - 1)))
    followed = draw(st.sets(st.integers(0, count - 1), max_size=2))
    steps: list[Any] = []
    for i in range(count):
        words = draw(WORDS)
        mock = MockSpec(
            response=" ".join(words),
            pattern=draw(st.sampled_from(["fast", "slow", "chunked", "realistic"])),
            error="overloaded" if i == failing else None,
            error_after=draw(st.integers(0, len(words))) if i == failing else None,
        )
        steps.append(
            ClaudeStep(
                name=f"s{i}",
                prompt=f"prompt {i}",
                mock=mock,
                stream_handler=draw(st.sampled_from([None, "buffer", ("buffer", "debug")])),
                stream_buffer_size=draw(st.sampled_from([None, 1, 2, 8])),
            )
        )
        if i in followed:
            steps.append(
                PythonStep(
                    name=f"f{i}",
                    callable="test_executor_properties:count_deltas",
                    input_stream=f"s{i}",
                    stream_buffer_size=draw(st.sampled_from([None, 1, 3])),
                )
            )
    return Pipeline(name="generated", steps=tuple(steps)), failing, followed


@settings(max_examples=60, deadline=None)
@given(pipelines(), st.integers(1, 16))
def test_generated_pipelines_keep_the_invariants(case: tuple[Pipeline, int | None, set[int]], buffer_size: int) -> None:
    spec, failing, followed = case
    with tempfile.TemporaryDirectory() as tmp:
        events: list[Event] = []

        async def main() -> Any:
            async with sluiceway.open_run(spec, output_dir=tmp, buffer_size=buffer_size) as run:
                async for event in run.events:
                    events.append(event)
            return await run.result()

        with contextlib.redirect_stderr(io.StringIO()):  # the debug handler writes there
            result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

        check_invariants(events)
        assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
        expected_status = "ok" if failing is None else "failed"
        assert result.status == events[-1].status == expected_status
        model_steps = [s.name for s in spec.steps if isinstance(s, ClaudeStep)]
        ran = model_steps if failing is None else model_steps[: failing + 1]
        # model steps run in spec order; nothing after the failure
        started = [e.step for e in events if isinstance(e, StepStarted) and e.step.startswith("s")]
        assert started == ran
        for name in ran:
            terminal = [e for e in events if e.step == name and isinstance(e, Done | Failed)]
            assert len(terminal) == 1
            expected_text = next(s for s in spec.steps if s.name == name).mock.response
            if isinstance(terminal[0], Done):
                assert terminal[0].response.text == expected_text
                assert result.steps[name].text == expected_text
            else:
                assert name == f"s{failing}"
        for i in followed:
            upstream = f"s{i}"
            if upstream not in ran:
                assert f"f{i}" not in result.steps
                continue
            deltas = sum(1 for e in events if isinstance(e, Delta) and e.step == upstream)
            assert result.steps[f"f{i}"].output == deltas
        data = json.loads((Path(tmp) / result.run_id / "result.json").read_text())
        assert data["status"] == expected_status
        assert list(data["steps"]) == list(result.steps)
