"""``sluiceway.aio``: the Python API on asyncio, through trio's guest mode.

Each test drives its own asyncio loop (``asyncio.run``) from a sync test; the
guest run is real (real time), so mock pacing here is kept short."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sluiceway.engine import Cancelled, Delta, Done, Event, RunFinished, RunStarted, StepStarted
from sluiceway.specs import ClaudeStep, MockSpec, Pipeline

import sluiceway
import sluiceway.aio as aio
from sluiceway.aio import _guest

SPEC = Pipeline(
    name="aio",
    steps=(
        ClaudeStep(name="first", prompt="one", mock=MockSpec(response="alpha beta", pattern="fast")),
        ClaudeStep(
            name="second",
            prompt="two",
            stream_handler="buffer",
            mock=MockSpec(response="gamma delta epsilon", pattern="fast"),
        ),
    ),
)
SLOW = MockSpec(response=" ".join(f"w{i}" for i in range(100)), pattern="slow")  # 0.3 s, then 0.15 s per word


def test_invoke_from_a_plain_asyncio_run() -> None:
    seen: list[Event] = []
    response = asyncio.run(aio.invoke("Say something", on_event=seen.append, mock="one two three"))
    assert response.text == "one two three"
    assert type(seen[0]) is StepStarted and type(seen[-1]) is Done
    assert "".join(e.content for e in seen if isinstance(e, Delta)) == "one two three"
    assert _guest._guests == {}  # the guest run closed with the loop


def test_invoke_from_inside_an_already_running_loop_while_other_tasks_run() -> None:
    # as a notebook cell would: the loop runs other tasks, and a coroutine awaits aio.invoke
    async def kernel() -> tuple[str, int, int, bool]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)

        async def cell() -> tuple[str, bool]:
            on_loop: list[bool] = []

            async def on_event(event: Event) -> None:  # an asyncio coroutine: runs on the loop
                on_loop.append(asyncio.current_task() is not None)
                await asyncio.sleep(0)

            response = await aio.invoke("x", on_event=on_event, mock={"response": "a b c d", "pattern": "chunked"})
            return response.text, all(on_loop) and len(on_loop) > 4

        before = ticks
        text, on_loop = await asyncio.create_task(cell())
        during = ticks - before
        ticking.cancel()
        second = await aio.invoke("again", mock="same loop, same guest")
        return text + "|" + second.text, during, len(_guest._guests), on_loop

    text, during, guests, on_loop = asyncio.run(kernel())
    assert text == "a b c d|same loop, same guest"
    assert during >= 5  # the other task kept running while the call streamed (~0.2 s)
    assert guests == 1 and on_loop
    assert _guest._guests == {}


def test_cancelling_the_task_mid_stream_yields_cancelled_and_cancelled_error(tmp_path: Path) -> None:
    seen: list[Event] = []
    result_files: list[Path] = []

    def recorder(into: list[Event], streaming: asyncio.Event) -> Any:
        def record(event: Event) -> None:
            into.append(event)
            if isinstance(event, Delta):
                streaming.set()

        return record

    async def main() -> None:
        streaming = asyncio.Event()
        task = asyncio.create_task(aio.invoke("x", on_event=recorder(seen, streaming), mock=SLOW))
        await streaming.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert type(seen[-1]) is Cancelled  # delivered before CancelledError reached us

        spec = Pipeline(name="slow", steps=(ClaudeStep(name="s", prompt="p", mock=SLOW),))
        run_events: list[Event] = []
        streaming = asyncio.Event()
        task = asyncio.create_task(aio.run(spec, output_dir=tmp_path, on_event=recorder(run_events, streaming)))
        await streaming.wait()
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 0.5
        assert type(run_events[-1]) is Cancelled

    asyncio.run(main())
    result_files.extend(tmp_path.glob("*/result.json"))
    (result_file,) = result_files
    assert json.loads(result_file.read_text())["status"] == "cancelled"


def test_failures_raise_the_same_exception_types(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(sluiceway.OverloadedError):
            await aio.invoke("x", mock={"response": "a b", "error": "overloaded"})
        bad = Pipeline(name="bad", steps=(ClaudeStep(name="a", prompt="x", condition="vars.x =="),))
        with pytest.raises(sluiceway.SpecError, match="unexpected end"):
            await aio.run(bad, output_dir=tmp_path)
        with pytest.raises(sluiceway.SpecError, match="unexpected end"):
            async with aio.open_run(bad, output_dir=tmp_path):
                raise AssertionError("the body must not run")
        with pytest.raises(sluiceway.ModeUnavailableError, match="cassette"):
            async with aio.open_run(SPEC, mode="replay", output_dir=tmp_path):
                raise AssertionError("the body must not run")
        failing = Pipeline(name="f", steps=(ClaudeStep(name="a", prompt="x", mock=MockSpec(response="a", error="overloaded")),))
        result = await aio.run(failing, output_dir=tmp_path)  # a failed step does not raise
        assert result.status == "failed"
        with pytest.raises(sluiceway.PipelineError):
            result.raise_for_status()
        slow = Pipeline(name="slow", steps=(ClaudeStep(name="s", prompt="p", mock=SLOW),))
        with pytest.raises(KeyError, match="mine"):  # still running when the body raises
            async with aio.open_run(slow, output_dir=tmp_path) as run:
                raise KeyError("mine")
        assert (await run.result()).status == "cancelled"

    asyncio.run(main())


def test_open_run_streams_every_event_in_order_as_the_trio_api_does(tmp_path: Path) -> None:
    async def main() -> tuple[list[Event], Any, str]:
        events = []
        async with aio.open_run(SPEC, output_dir=tmp_path, buffer_size=2) as run:
            assert not run.finished
            async for event in run.events:
                events.append(event)
        result = await run.result()
        async with aio.open_run(SPEC, output_dir=tmp_path, handlers=[], select="second") as run:
            text = "".join([piece async for piece in run.text_stream()])
        return events, result, text

    events, result, text = asyncio.run(main())
    assert type(events[0]) is RunStarted and type(events[-1]) is RunFinished
    assert result.status == "ok" and events[-1].status == "ok"
    for step in ("first", "second"):
        mine = [e for e in events if e.step == step]
        assert type(mine[0]) is StepStarted and type(mine[-1]) is Done
        assert [e.seq for e in mine] == sorted({e.seq for e in mine})
    assert "".join(e.content for e in events if isinstance(e, Delta)) == "alpha betagamma delta epsilon"
    assert result.handlers["second"][0].text() == "gamma delta epsilon"
    assert text == "gamma delta epsilon"


def test_open_run_break_cancels_wait_waits_and_cancel_streams_to_the_end(tmp_path: Path) -> None:
    spec = Pipeline(name="slow", steps=(ClaudeStep(name="s", prompt="p", mock=SLOW),))

    async def main() -> None:
        seen: list[Event] = []
        async with aio.open_run(spec, output_dir=tmp_path, on_event=seen.append) as run:
            async for event in run.events:
                if isinstance(event, Delta):
                    break
            broke = time.monotonic()
        assert time.monotonic() - broke < 0.5
        assert (await run.result()).status == "cancelled" and type(seen[-1]) is Cancelled

        async with aio.open_run(SPEC, output_dir=tmp_path) as run:
            waited = await run.wait()
        assert waited.status == "ok" and run.finished

        async with aio.open_run(spec, output_dir=tmp_path) as run:
            kinds = []
            async for event in run.events:
                kinds.append(type(event))
                if event is not None and isinstance(event, Delta) and kinds.count(Delta) == 2:
                    run.cancel()
        assert kinds[-2:] == [Cancelled, RunFinished]
        assert (await run.result()).status == "cancelled"

    asyncio.run(main())


def test_a_slow_reader_slows_the_run_and_memory_stays_bounded(tmp_path: Path) -> None:
    spec = Pipeline(
        name="many",
        steps=(ClaudeStep(name="s", prompt="p", mock=MockSpec(response=" ".join(["w"] * 400), pattern="instant")),),
    )
    buffer_size = 4

    async def main() -> int:
        sent = 0
        ahead = 0

        def count(event: Event) -> None:
            nonlocal sent
            sent += 1

        read = 0
        async with aio.open_run(spec, output_dir=tmp_path, buffer_size=buffer_size, on_event=count) as run:
            async for _ in run.events:
                read += 1
                ahead = max(ahead, sent - read)
                await asyncio.sleep(0.001)
        return ahead

    ahead = asyncio.run(main())
    # the run's channel, the handoff's batches, the batch the pump holds, the batch being read
    assert 0 < ahead <= (aio._api.HANDOFF_BATCHES + 3) * buffer_size + 1


def test_the_guest_run_closes_with_each_loop_and_by_hand() -> None:
    assert asyncio.run(aio.invoke("a", mock="one")).text == "one"
    assert asyncio.run(aio.invoke("b", mock="two")).text == "two"  # a new loop, a new guest
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(aio.invoke("c", mock="three")).text == "three"
        assert len(_guest._guests) == 1
        loop.run_until_complete(aio.aclose())
        assert _guest._guests == {}
        assert loop.run_until_complete(aio.invoke("d", mock="four")).text == "four"
        loop.run_until_complete(loop.shutdown_asyncgens())
        assert _guest._guests == {}
    finally:
        loop.close()


def test_bench_aio_quick_runs() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "bench._aio", "--quick"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows["bridge"]["events_per_run"] == 505
    assert {"trio_open_run_events_per_s", "aio_open_run_events_per_s", "aio_cost_ratio"} <= set(rows["bridge"])
    assert [run["events"] for run in rows["slow_reader"]["runs"]] == [205, 805]


def test_run_and_open_run_resume_from_asyncio(tmp_path: Path) -> None:
    """``resume=`` crosses the bridge: the second run replays both steps, the third (open_run) too."""

    async def main() -> tuple[Any, Any, list[Event]]:
        first = await aio.run(SPEC, output_dir=tmp_path)
        second = await aio.run(SPEC, output_dir=tmp_path, resume=first.run_dir)
        async with aio.open_run(SPEC, output_dir=tmp_path, handlers=[], resume=second.run_dir) as run:
            events = [event async for event in run.events]
            await run.result()
        return first, second, events

    first, second, events = asyncio.run(main())
    assert (first.requests, second.requests) == (2, 0)
    assert (second.reused.responses, second.resumed_from) == (2, first.run_dir)
    assert [second.steps[n].text for n in ("first", "second")] == ["alpha beta", "gamma delta epsilon"]
    assert [e.step for e in events if isinstance(e, StepStarted) and e.replayed] == ["first", "second"]
    assert [e.step for e in events if isinstance(e, Done) and e.replayed] == ["first", "second"]
