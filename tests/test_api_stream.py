"""The trio Python API as a stream: leaving ``open_run`` cancels, ``wait``, ``cancel``,
``text_stream``, ``result``, ``select=``; handlers from Python (objects, classes,
functions, names, lists, per step); the trio API called from asyncio."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
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
from sluiceway.handlers import BufferHandler
from sluiceway.specs import ClaudeStep, MockSpec, Pipeline

import sluiceway

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello.yaml"

SPEC = Pipeline(
    name="stream",
    steps=(
        ClaudeStep(name="first", prompt="one", mock=MockSpec(response="alpha beta", pattern="slow")),
        ClaudeStep(
            name="second",
            prompt="two",
            stream_handler="buffer",
            stream_handler_opts={"max_size": 3},
            mock=MockSpec(response="gamma delta epsilon", pattern="slow"),
        ),
    ),
)


class Recorder:
    """A handler object: records events, counts closes."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = 0

    async def handle(self, event: Event) -> None:
        self.events.append(event)

    async def aclose(self) -> None:
        self.closed += 1


async def test_break_out_of_open_run_on_hello_leaves_in_under_half_a_second(tmp_path: Path) -> None:
    # real time: hello.yaml streams for ~6.6 s on trio's clock
    seen: list[Event] = []
    started = time.perf_counter()
    async with sluiceway.open_run(HELLO, output_dir=tmp_path, handlers=[], on_event=seen.append) as run:
        async for event in run.events:
            if isinstance(event, Delta):
                break
        broke = time.perf_counter()
    left = time.perf_counter()
    assert left - broke < 0.5
    assert left - started < 1.5  # nowhere near the 6.6 s the whole run takes
    result = await run.result()
    assert result.status == "cancelled" and result.steps["greet"].status == "cancelled"
    assert type(seen[-1]) is Cancelled and seen[-1].step == "greet"
    assert (tmp_path / run.run_id / "result.json").exists()


async def test_open_run_cancel_streams_the_cancelled_events_then_ends(tmp_path: Path, autojump_clock: Any) -> None:
    async with sluiceway.open_run(SPEC, output_dir=tmp_path) as run:
        events = []
        async for event in run.events:
            events.append(event)
            if isinstance(event, Delta):
                run.cancel()
        result = await run.result()
    assert result.status == "cancelled"
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is RunFinished and events[-1].status == "cancelled"
    assert Cancelled in kinds and Done not in kinds
    assert run.finished


async def test_text_stream_gives_one_steps_text(tmp_path: Path, autojump_clock: Any) -> None:
    async with sluiceway.open_run(SPEC, output_dir=tmp_path, handlers=[]) as run:
        text = [piece async for piece in run.text_stream("second")]
    assert "".join(text) == "gamma delta epsilon"
    assert (await run.result()).status == "ok"
    async with sluiceway.open_run(SPEC, output_dir=tmp_path, handlers=[]) as run:
        everything = "".join([piece async for piece in run.text_stream()])
    assert everything == "alpha betagamma delta epsilon"


async def test_select_filters_before_the_channel(tmp_path: Path, autojump_clock: Any) -> None:
    # One slot, and nobody reads until the first step is over: it must not block on
    # events that were not selected.
    async with sluiceway.open_run(SPEC, output_dir=tmp_path, select=["second", Delta, RunFinished], buffer_size=1) as run:
        start = trio.current_time()
        await trio.sleep(2.0)
        events = [event async for event in run.events]
    assert [type(e) for e in events] == [Delta, Delta, Delta, RunFinished]
    assert {e.step for e in events[:-1]} == {"second"}
    assert events[0].at < 0.3 + 2 * 0.15 + 0.3 + 0.01  # step one ran while nobody read
    assert trio.current_time() - start >= 2.0
    async with sluiceway.open_run(SPEC, output_dir=tmp_path, select=Message) as run:
        assert [e.step async for e in run.events] == ["first", "second"]
    with pytest.raises(TypeError, match="select"):
        async with sluiceway.open_run(SPEC, output_dir=tmp_path, select=[3]):
            pass


async def test_handlers_take_objects_classes_functions_names_and_lists(tmp_path: Path, autojump_clock: Any) -> None:
    shared = Recorder()
    calls: list[str] = []

    async def async_fn(event: Event) -> None:
        await trio.lowlevel.checkpoint()
        calls.append("async")

    result = await sluiceway.run(
        SPEC,
        output_dir=tmp_path,
        handlers=[shared, BufferHandler, lambda e: calls.append("sync"), async_fn, "buffer"],
    )
    assert result.status == "ok"
    # the object saw both steps, in order, and was closed once, at the end
    assert [e.step for e in shared.events if isinstance(e, StepStarted)] == ["first", "second"]
    assert shared.closed == 1
    first, second = result.handlers["first"], result.handlers["second"]
    assert [type(h).__name__ for h in second] == [
        "SharedHandler", "BufferHandler", "CallbackHandler", "CallbackHandler", "BufferHandler"
    ]
    assert second[0].events is shared.events  # reads through to the object
    assert second[1] is not first[1]  # a class: a fresh instance per step
    assert second[1].options.max_size == 3  # with the step's options it declares
    assert calls.count("sync") == calls.count("async") == len(shared.events)


async def test_handlers_per_step_and_on_event_adds(tmp_path: Path, autojump_clock: Any) -> None:
    mine = Recorder()
    every: list[Event] = []
    result = await sluiceway.run(SPEC, output_dir=tmp_path, handlers={"first": [mine]}, on_event=every.append)
    assert {e.step for e in mine.events} == {"first"}
    # "second" keeps its spec handler (buffer); on_event is added to both steps
    assert [type(h).__name__ for h in result.handlers["second"]] == ["BufferHandler", "CallbackHandler"]
    assert [e.step for e in every if isinstance(e, Done)] == ["first", "second"]
    assert mine.closed == 1


def test_run_sync_takes_a_handler_object(tmp_path: Path) -> None:
    printer = Recorder()
    result = sluiceway.run_sync(SPEC, output_dir=tmp_path, handlers=printer)
    assert result.status == "ok"
    assert "".join(e.content for e in printer.events if isinstance(e, Delta)) == "alpha betagamma delta epsilon"


async def test_bad_handler_sources_fail_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(sluiceway.SpecError, match="handlers\\[1\\]"):
        await sluiceway.run(SPEC, output_dir=tmp_path, handlers=[Recorder(), "no_such_handler"])
    with pytest.raises(TypeError, match="on_event"):
        await sluiceway.run(SPEC, output_dir=tmp_path, on_event=42)
    assert not list(await trio.Path(tmp_path).iterdir())


async def test_invoke_takes_handlers_and_handler_classes(autojump_clock: Any) -> None:
    recorder = Recorder()
    response = await sluiceway.invoke("x", handlers=recorder, on_event=[BufferHandler], mock="a b c")
    assert response.text == "a b c"
    assert type(recorder.events[0]) is StepStarted and type(recorder.events[-1]) is Done
    assert recorder.closed == 1
    with pytest.raises(ValueError, match="handlers need stream=True"):
        await sluiceway.invoke("x", stream=False, handlers=recorder)


def test_the_trio_api_on_asyncio_says_to_use_sluiceway_aio(tmp_path: Path) -> None:
    async def main() -> list[str]:
        messages = []
        for call in (
            lambda: sluiceway.run(SPEC, output_dir=tmp_path),
            lambda: sluiceway.invoke("x"),
        ):
            with pytest.raises(RuntimeError) as info:
                await call()
            messages.append(str(info.value))
        with pytest.raises(RuntimeError) as info:
            async with sluiceway.open_run(SPEC, output_dir=tmp_path):
                pass
        messages.append(str(info.value))
        return messages

    run_msg, invoke_msg, open_msg = asyncio.run(main())
    assert "use `await sluiceway.aio.run(...)`" in run_msg
    assert "use `await sluiceway.aio.invoke(...)`" in invoke_msg
    assert "use `async with sluiceway.aio.open_run(...)`" in open_msg
    assert "asyncio event loop" in run_msg


async def test_cancelled_as_the_last_step_ends_the_stream_still_ends_with_run_finished(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """Found by tests/test_faults.py: ``run.cancel()`` after the last step's ``Done`` (while
    ``RunFinished`` waited to be sent) ended the stream without ``RunFinished``."""
    from sluiceway.engine import Done, RunFinished

    spec = Pipeline(name="end", steps=(ClaudeStep(name="ask", prompt="hi", mock=MockSpec(response="one two", delay_ms=10)),))
    for i in range(5):
        events: list[Any] = []
        async with sluiceway.open_run(spec, output_dir=tmp_path / str(i), buffer_size=1) as run:
            async for event in run.events:
                events.append(event)
                if isinstance(event, Done) and event.step == "ask":
                    run.cancel()
            result = await run.result()
        assert isinstance(events[-1], RunFinished), type(events[-1]).__name__
        assert events[-1].status == result.status
