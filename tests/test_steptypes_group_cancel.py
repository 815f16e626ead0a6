"""Invariant 6 for composite steps: a run cancelled from outside while a ``claude_batch`` or
``parallel_claude`` step streams still gives every handler of that step each started
sub-step's terminal event, before the composite step's own ``Cancelled``."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sluiceway.engine import Cancelled, Delta, Done, Event, Failed, StepStarted
from sluiceway.engine._actors import TERMINAL_DELIVERY_TIMEOUT
from sluiceway.specs import loads

from sluiceway._execution import RunOptions, execute
from sluiceway.testing import StreamingRecorder, check_invariants

SPEC = """
name: cancel-groups
steps:
  - name: many
    type: claude_batch
    prompt: "Echo item-{{item}} says one two three four five six"
    items: [a, b, c, d, e]
    batch_config: {max_parallel: 3}
    stream_handler: [sluiceway.testing.StreamingRecorder, buffer]
    stream_buffer_size: BUFFER
    mock: {pattern: slow}
  - name: par
    type: parallel_claude
    stream_handler: [sluiceway.testing.StreamingRecorder, buffer]
    stream_buffer_size: BUFFER
    parallel_tasks:
      - id: x
        prompt: "x one two three four five six seven eight"
        mock: {pattern: slow}
      - id: y
        prompt: "y one two"
        mock: {response: "y one two", delay_ms: 100}
      - id: z
        prompt: "z one two three four five six seven eight nine ten"
        mock: {pattern: slow, delay_ms: 250}
"""

TERMINALS = (Done, Failed, Cancelled)


async def run_cancelled(tmp_path: Path, running: str, cancel_at: float, buffer: int) -> tuple[Any, list[Event]]:
    """Cancel the run from outside *cancel_at* virtual seconds after step *running* started.

    Returns the live result and the run's events. (Timed from the step's start: the files
    written between steps take real time, in which the virtual clock may jump.)"""
    spec = loads(SPEC.replace("BUFFER", str(buffer)))
    options = RunOptions(output_dir=tmp_path / "out", workspace=tmp_path)
    send, receive = trio.open_memory_channel[Event](10_000)
    seen: list[Event] = []
    started = trio.Event()
    async with trio.open_nursery() as nursery:

        async def collect() -> None:
            async with receive:
                async for event in receive:
                    seen.append(event)
                    if isinstance(event, StepStarted) and event.step == running:
                        started.set()

        nursery.start_soon(collect)
        async with trio.open_nursery() as run_nursery:  # cancelled from outside the run
            result = await run_nursery.start(partial(execute, spec, options, send_events=send))
            await started.wait()
            await trio.sleep(cancel_at)
            run_nursery.cancel_scope.cancel()
    return result, seen


def assert_whole_view(events: list[Event], parent: str) -> None:
    """Every started sub-step has exactly one terminal, and the composite step's Cancelled is last."""
    check_invariants(events)
    started = [e.step for e in events if isinstance(e, StepStarted)]
    assert started[0] == parent and len(started) == len(set(started))
    for step in started:
        terminals = [e for e in events if e.step == step and isinstance(e, TERMINALS)]
        assert len(terminals) == 1, (step, [type(e).__name__ for e in events if e.step == step])
    assert isinstance(events[-1], Cancelled) and events[-1].step == parent
    # nothing of a sub-step after the parent's terminal, nothing of the parent between
    assert [e for e in events if e.step == parent] == [events[0], events[-1]]


@pytest.mark.parametrize("buffer", [1, 64])
@pytest.mark.parametrize(
    ("cancel_at", "running"),
    [(0.2, "many"), (0.9, "many"), (3.3, "many"), (5.0, "many"), (0.1, "par"), (1.6, "par"), (5.1, "par")],
)
async def test_outside_cancel_gives_each_handler_every_sub_step_terminal(
    autojump_clock: Any, tmp_path: Path, cancel_at: float, running: str, buffer: int
) -> None:
    result, run_events = await run_cancelled(tmp_path, running, cancel_at, buffer)
    assert result.status == "cancelled"
    check_invariants(run_events)
    started_on_run = [e.step for e in run_events if isinstance(e, StepStarted) and e.step.startswith(running)]
    assert len(started_on_run) > 1  # the cancel came while sub-steps streamed
    recorder, buffer_handler = result.handlers[running]
    assert isinstance(recorder, StreamingRecorder) and recorder.close_count == 1
    for seen in (recorder.events(), list(buffer_handler.events)):
        assert_whole_view(seen, running)
        # the handler saw every sub-step the run's stream saw start (their StepStarted may
        # have been in flight, but then it arrives with its terminal)
        assert [e.step for e in seen if isinstance(e, StepStarted)][1:] != []
        assert {e.step for e in seen if isinstance(e, StepStarted)} == set(started_on_run)
        # terminals of sub-steps come in the order the sub-steps ended on the run's stream
        ends = [e.step for e in run_events if isinstance(e, TERMINALS) and e.step.startswith(f"{running}")]
        got = [e.step for e in seen if isinstance(e, TERMINALS)]
        assert got == ends
    # a sub-step that finished before the cancel is a Done with all its text in the handler's view
    for e in recorder.events(kind=Done):
        text = "".join(d.content for d in recorder.events(step=e.step, kind=Delta))
        assert text == e.response.text


# -- the engine alone: stream_group with slow handlers, cancelled at any time ------------------


def _group_view_ok(events: list[Event], started: set[str], group_end: Event, complete: bool) -> None:
    """*complete*: the handler is fast enough to take every sub-step's StepStarted and terminal
    within the bound; a slower one may miss some, but still gets the group's terminal last."""
    ended = {e.step for e in events if isinstance(e, TERMINALS)}
    if complete:
        check_invariants(events)
    else:
        check_invariants([e for e in events if e.step in ended])
    assert events[-1].step == "g"
    if isinstance(group_end, Cancelled):
        assert isinstance(events[-1], Cancelled)
    else:  # cancelled while Done was delivered: Done, or Cancelled(partial) when it lost events
        assert events[-1] == group_end or (isinstance(events[-1], Cancelled) and events[-1].seq == group_end.seq)
    seen_started = {e.step for e in events if isinstance(e, StepStarted)}
    assert seen_started <= started | {"g"}
    for step in seen_started:
        assert sum(1 for e in events if e.step == step and isinstance(e, TERMINALS)) == (
            1 if complete or step in ended else 0
        ), step
    assert [e.step for e in events if e.step == "g"] == ["g", "g"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cancel_at=st.floats(0.0, 1.2),
    delays=st.lists(st.sampled_from([0.0, 0.01, 0.07, 0.3]), min_size=1, max_size=3),
    batch=st.booleans(),
    buffer=st.sampled_from([1, 2, 64]),
    policy=st.sampled_from(["block", "coalesce"]),
    n=st.integers(1, 4),
)
def test_cancelled_group_each_slow_handler_gets_every_started_sub_steps_terminal(
    cancel_at: float, delays: list[float], batch: bool, buffer: int, policy: str, n: int
) -> None:
    from engine_helpers import Recorder, ScriptedProvider, _Stream, call_script, request
    from sluiceway.engine import HandlerConsumer, Response, RunContext, stream_step
    from sluiceway.engine._group import stream_group

    class ByStep(ScriptedProvider):
        def stream(self, req: Any) -> Any:
            self.requests.append(req)
            return _Stream(self, self.scripts[int(req.step[2:-1])])

    async def main() -> None:
        run_send, run_recv = trio.open_memory_channel[Event](10_000)
        run = RunContext(run_id="r", origin=trio.current_time(), events=run_send)
        scripts = [call_script([("text", [f"t{i}w{j} " for j in range(4 + i)])], delay=0.1 + 0.05 * i) for i in range(n)]
        provider = ByStep(scripts)
        recorders = [Recorder(delay=d, batch=batch, policy=policy) for d in delays]

        async def body(sub: Any) -> Response:
            async def one(i: int) -> None:
                await trio.sleep(0.2 * i)  # sub-steps start at different times
                await stream_step(
                    run=run, path=f"g[{i}]", provider=provider, request=request(step=f"g[{i}]"), consumers=[sub()]
                )

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(one, i)
            return Response(text="")

        with trio.move_on_after(cancel_at) as scope:
            await stream_group(
                run=run, path="g", consumers=[HandlerConsumer(r, f"r{k}", policy, buffer) for k, r in enumerate(recorders)],
                body=body, step_type="claude_batch", buffer_size=buffer,
            )
        run_send.close()
        on_run = [e async for e in run_recv]
        check_invariants(on_run)
        started = {e.step for e in on_run if isinstance(e, StepStarted)}
        (group_end,) = [e for e in on_run if e.step == "g" and isinstance(e, TERMINALS)]
        for recorder in recorders:
            assert recorder.close_count == 1
            if scope.cancelled_caught:
                # at most a StepStarted and a terminal per sub-step after the cancellation
                complete = recorder.delay * 2 * n <= TERMINAL_DELIVERY_TIMEOUT / 2
                _group_view_ok(recorder.events, started, group_end, complete)
            else:
                check_invariants(recorder.events)
                assert isinstance(recorder.events[-1], Done)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
