"""The Python API: run, run_sync, open_run, invoke."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from sluiceway.engine import (
    Cancelled,
    Delta,
    Done,
    Event,
    Message,
    RunFinished,
    RunStarted,
    StepStarted,
)
from sluiceway.specs import ClaudeStep, MockSpec, Pipeline

import sluiceway

SPEC = Pipeline(
    name="api",
    steps=(
        ClaudeStep(name="first", prompt="one", mock=MockSpec(response="alpha beta", pattern="slow")),
        ClaudeStep(
            name="second",
            prompt="two",
            stream_handler="buffer",
            mock=MockSpec(response="gamma delta epsilon", pattern="slow"),
        ),
    ),
)


async def test_run_returns_result_with_readable_buffer(tmp_path: Path, autojump_clock: Any) -> None:
    result = await sluiceway.run(SPEC, output_dir=tmp_path, workspace=tmp_path)
    assert result.status == "ok" and result.ok
    assert [(n, s.status, s.text) for n, s in result.steps.items()] == [
        ("first", "ok", "alpha beta"),
        ("second", "ok", "gamma delta epsilon"),
    ]
    (buffer,) = result.handlers["second"]
    assert buffer.text() == "gamma delta epsilon"
    assert result.handlers["first"] == []
    assert result.result_file == tmp_path / result.run_id / "result.json"
    assert result.raise_for_status() is result


def test_run_sync_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        """
name: from_file
steps:
  - name: only
    type: claude
    prompt: "hello"
    mock: {response: "hi there"}
""",
        encoding="utf-8",
    )
    result = sluiceway.run_sync(path, output_dir=tmp_path / "out")
    assert result.status == "ok"
    assert result.steps["only"].text == "hi there"
    assert (tmp_path / "out" / result.run_id / "only.txt").read_text() == "hi there"


async def test_open_run_streams_every_event_in_order(tmp_path: Path, autojump_clock: Any) -> None:
    events: list[tuple[float, Event]] = []
    async with sluiceway.open_run(SPEC, output_dir=tmp_path, buffer_size=1) as run:
        assert not run.finished
        async for event in run.events:
            events.append((trio.current_time(), event))
    result = await run.result()
    assert run.finished and result.status == "ok"
    kinds = [type(e) for _, e in events]
    assert kinds[0] is RunStarted and kinds[-1] is RunFinished
    assert {e.run_id for _, e in events} == {run.run_id}
    for step in ("first", "second"):
        mine = [e for _, e in events if e.step == step]
        assert type(mine[0]) is StepStarted and type(mine[-1]) is Done
        seqs = [e.seq for e in mine]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # live: the first delta arrives at the mock's first-token time, long before the end
    t0 = events[0][0]
    first_delta_at = next(t for t, e in events if isinstance(e, Delta)) - t0
    assert first_delta_at == pytest.approx(0.3, abs=0.01)
    assert events[-1][0] - t0 > 1.0
    text = "".join(e.content for _, e in events if isinstance(e, Delta) and e.step == "second")
    assert text == "gamma delta epsilon"
    assert events[-1][1].status == "ok"


async def test_open_run_wait_without_reading_lets_the_run_finish(tmp_path: Path, autojump_clock: Any) -> None:
    # (leaving the block without waiting cancels the run: tests/test_api_stream.py)
    async with sluiceway.open_run(SPEC, output_dir=tmp_path, buffer_size=1) as run:
        waited = await run.wait()
    result = await run.result()
    assert result is waited
    assert result.status == "ok"
    assert result.steps["second"].text == "gamma delta epsilon"


async def test_open_run_body_error_cancels_the_run(tmp_path: Path, autojump_clock: Any) -> None:
    with pytest.raises(KeyError, match="stop here"):
        async with sluiceway.open_run(SPEC, output_dir=tmp_path) as run:
            async for event in run.events:
                if isinstance(event, Delta):
                    raise KeyError("stop here")
    result = await run.result()
    assert result.status == "cancelled"
    assert result.steps["first"].status == "cancelled"


async def test_invoke_streams_to_sync_on_event(autojump_clock: Any) -> None:
    seen: list[tuple[float, Event]] = []
    start = trio.current_time()
    response = await sluiceway.invoke(
        "Say something",
        on_event=lambda e: seen.append((trio.current_time() - start, e)),
        mock={"response": "one two three", "pattern": "slow"},
    )
    assert response.text == "one two three"
    kinds = [type(e) for _, e in seen]
    assert kinds[0] is StepStarted
    assert kinds[-1] is Done
    assert Message in kinds
    deltas = [(t, e) for t, e in seen if isinstance(e, Delta)]
    assert "".join(e.content for _, e in deltas) == "one two three"
    assert [round(t, 3) for t, _ in deltas] == [0.3, 0.45, 0.6]
    assert seen[-1][1].response == response


async def test_invoke_async_on_event_backpressure(autojump_clock: Any) -> None:
    seen: list[str] = []

    async def slow_on_event(event: Event) -> None:
        await trio.sleep(1)
        seen.append(type(event).__name__)

    start = trio.current_time()
    response = await sluiceway.invoke("x", on_event=slow_on_event, mock=MockSpec(response="a b"))
    assert seen[0] == "StepStarted" and seen[-1] == "Done"
    assert seen.count("Delta") == 2
    # the handler is awaited for every event before invoke returns
    assert trio.current_time() - start >= len(seen)
    assert response.text == "a b"


async def test_invoke_derived_text_is_deterministic_and_errors_raise(autojump_clock: Any) -> None:
    a = await sluiceway.invoke("What is a sluice?")
    b = await sluiceway.invoke("What is a sluice?", stream=False)
    assert a.text == b.text and a.text
    with pytest.raises(sluiceway.OverloadedError):
        await sluiceway.invoke("x", mock={"response": "a b", "error": "overloaded"})
    with pytest.raises(ValueError, match="on_event needs stream=True"):
        await sluiceway.invoke("x", stream=False, on_event=print)


async def test_invoke_on_event_error_fails_the_call(autojump_clock: Any) -> None:
    def bad(event: Event) -> None:
        if isinstance(event, Delta):
            raise RuntimeError("handler broke")

    with pytest.raises(Exception) as info:
        await sluiceway.invoke("x", on_event=bad, mock="a b c")
    assert "handler broke" in repr(info.value) or "handler broke" in str(info.value.__cause__)


async def test_invoke_cancelled_delivers_cancelled(autojump_clock: Any) -> None:
    seen: list[Event] = []
    with trio.move_on_after(0.5):
        await sluiceway.invoke("x", on_event=seen.append, mock=MockSpec(response="a b c d e", pattern="slow"))
    assert type(seen[-1]) is Cancelled
    assert "".join(e.content for e in seen if isinstance(e, Delta)) == "a b "


async def test_open_run_body_error_with_full_channel_does_not_wait(tmp_path: Path, autojump_clock: Any) -> None:
    start = trio.current_time()
    with pytest.raises(RuntimeError, match="not reading"):
        async with sluiceway.open_run(SPEC, output_dir=tmp_path, buffer_size=1) as run:
            await trio.sleep(0.5)  # the run fills the one-slot channel and blocks
            raise RuntimeError("not reading")
    assert (await run.result()).status == "cancelled"
    assert trio.current_time() - start < 0.6  # no close timeout was waited out


async def test_open_run_setup_errors_are_not_wrapped(tmp_path: Path) -> None:
    bad = Pipeline(name="bad", steps=(ClaudeStep(name="a", prompt="x", condition="vars.x =="),))
    with pytest.raises(sluiceway.SpecError, match=r"steps\[0\]\.condition: condition 'vars.x ==': unexpected end"):
        async with sluiceway.open_run(bad, output_dir=tmp_path):
            raise AssertionError("the body must not run")
    with pytest.raises(sluiceway.ModeUnavailableError, match="cassette"):
        async with sluiceway.open_run(SPEC, mode="replay", output_dir=tmp_path):
            raise AssertionError("the body must not run")


EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_every_example_runs_in_mock_mode(
    path: Path, tmp_path: Path, autojump_clock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy_* examples warn on purpose
        # a copy, so that examples whose tools or sessions write into the workspace leave examples/ alone
        import shutil

        copy = tmp_path / "examples"
        shutil.copytree(path.parent, copy)
        result = await sluiceway.run(copy / path.name, output_dir=tmp_path / "out")
    assert result.status == "ok", (result.failed_step, result.error)
    for name, step in result.steps.items():
        assert step.status in ("ok", "skipped"), name
        if step.status == "ok" and step.type != "python":
            assert step.text or step.output, name  # composite steps: their outputs
    assert (tmp_path / "out" / result.run_id / "result.json").exists()


async def test_record_and_replay_a_cassette_from_python(tmp_path: Path) -> None:
    spec = sluiceway.specs.Pipeline(
        name="c",
        steps=(sluiceway.specs.ClaudeStep(name="a", prompt="hi", mock=sluiceway.specs.MockSpec(response="one two")),),
    )
    cassette = tmp_path / "c.cassette"
    recorded = await sluiceway.run(spec, output_dir=tmp_path / "rec", record=cassette)
    replayed = await sluiceway.run(spec, mode="replay", cassette=cassette, output_dir=tmp_path / "rep")
    assert recorded.steps["a"].response.text == replayed.steps["a"].response.text == "one two"
    assert (recorded.cost_usd, replayed.cost_usd) == (0.0, 0.0)
    with pytest.raises(sluiceway.ModeUnavailableError, match="cassette= from Python"):
        await sluiceway.run(spec, mode="replay", output_dir=tmp_path / "none")
    with pytest.raises(sluiceway.ModeUnavailableError, match=r"run\(spec, mode='replay', cassette=FILE\)"):
        await sluiceway.invoke("hi", mode="replay")
