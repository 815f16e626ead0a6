"""engine._group.stream_group: sub-steps fan in to one set of handlers; policies; cancellation."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
from engine_helpers import Recorder, ScriptedProvider, call_script, request
from sluiceway.engine import (
    Cancelled,
    Delta,
    Done,
    Failed,
    HandlerConsumer,
    Response,
    RunContext,
    StepStarted,
    stream_step,
)
from sluiceway.engine._group import stream_group

from sluiceway._errors import HandlerError
from sluiceway.testing import check_invariants


def scripts(n, words=5, delay=0.1):
    return [call_script([("text", [f"t{i}w{j} " for j in range(words)])], delay=delay) for i in range(n)]


class ByStep(ScriptedProvider):
    """Plays script i for step ``g[i]``, whatever the order of the calls."""

    def stream(self, request):
        self.requests.append(request)
        from engine_helpers import _Stream

        return _Stream(self, self.scripts[int(request.step[2:-1])])


async def run_group(consumers, n=4, *, run=None, **kwargs):
    run = run or RunContext(run_id="r", origin=trio.current_time())
    provider = ByStep(scripts(n))

    async def body(sub):
        texts = [None] * n

        async def one(i):
            response = await stream_step(
                run=run, path=f"g[{i}]", provider=provider, request=request(step=f"g[{i}]"), consumers=[sub()]
            )
            texts[i] = response.text

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
        return Response(text="", output=texts)

    return await stream_group(run=run, path="g", consumers=consumers, body=body, step_type="claude_batch", **kwargs)


async def test_slow_coalescing_and_blocking_handlers_see_every_sub_step_in_order(autojump_clock):
    slow = Recorder(delay=0.5, policy="coalesce")
    block = Recorder(delay=0.05)
    response = await run_group(
        [HandlerConsumer(slow, "slow", "coalesce", 2), HandlerConsumer(block, "block", "block", 2)], buffer_size=2
    )
    assert response.output == [f"t{i}w0 t{i}w1 t{i}w2 t{i}w3 t{i}w4 " for i in range(4)]
    for rec in (slow, block):
        check_invariants(rec.events)
        assert rec.close_count == 1
        assert rec.events[0].step == "g" and isinstance(rec.events[-1], Done) and rec.events[-1].step == "g"
        for i in range(4):
            text = "".join(e.content for e in rec.events if isinstance(e, Delta) and e.step == f"g[{i}]")
            assert text == response.output[i]
    # interleaved sub-steps: a pending merged delta is flushed when another sub-step's delta comes,
    # so the slow handler still got every text, merged or not
    assert sum(isinstance(e, Delta) for e in block.events) == 20


async def test_a_failing_handler_under_fail_fails_the_group(autojump_clock):
    bad = Recorder(fail_at=3)
    with pytest.raises(HandlerError):
        await run_group([HandlerConsumer(bad, "bad")], on_handler_error="fail")
    assert bad.close_count == 1


async def test_a_failing_body_is_the_groups_failed_with_its_partial(autojump_clock):
    rec = Recorder()
    partial = Response(text="", output=["x"])

    async def body(sub):
        error = RuntimeError("boom")
        error.partial = partial
        raise error

    with pytest.raises(RuntimeError, match="boom"):
        await stream_group(
            run=RunContext(run_id="r", origin=trio.current_time()), path="g", consumers=[HandlerConsumer(rec, "r")],
            body=body, step_type="parallel_claude",
        )
    assert [type(e).__name__ for e in rec.events] == ["StepStarted", "Failed"]
    assert rec.events[-1].partial is partial and rec.close_count == 1


async def test_cancelled_group_ends_with_one_cancelled_and_closes_handlers(autojump_clock):
    rec = Recorder()
    run_send, run_recv = trio.open_memory_channel(1000)
    run = RunContext(run_id="r", origin=trio.current_time(), events=run_send)
    with trio.move_on_after(0.25):
        await run_group([HandlerConsumer(rec, "r")], run=run)
    assert rec.close_count == 1
    assert isinstance(rec.events[-1], Cancelled) and rec.events[-1].step == "g"
    run_send.close()
    seen = [e async for e in run_recv]
    # on the run's stream every started sub-step and the group got exactly one terminal
    check_invariants(seen)
    terminals = [e for e in seen if isinstance(e, Done | Failed | Cancelled)]
    assert sorted(e.step for e in terminals) == ["g", "g[0]", "g[1]", "g[2]", "g[3]"]
    assert all(isinstance(e, Cancelled) for e in terminals)


async def test_the_fan_in_is_drained_without_a_scheduler_pass_per_event():
    # 20 sub-steps with no delays fill the fan-in at once; the pump hands over everything waiting
    # before it yields (trio's receive yields on every call: one event per scheduler pass, which let
    # the pump fall behind N sub-steps: p99 lag 335-379 ms with 500 paced sub-steps, 24-27 ms drained)
    passes = 0
    seen_at: list[int] = []

    class Counting(Recorder):
        def _record(self, event):
            seen_at.append(passes)
            super()._record(event)

    rec = Counting(direct=0)
    done = trio.Event()

    async def ticker():
        nonlocal passes
        while not done.is_set():
            passes += 1
            await trio.lowlevel.checkpoint()

    run = RunContext(run_id="r", origin=trio.current_time())
    provider = ByStep(scripts(20, words=5, delay=0.0))

    async def body(sub):
        async def one(i):
            await stream_step(run=run, path=f"g[{i}]", provider=provider, request=request(step=f"g[{i}]"),
                              consumers=[sub()])

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(one, i)
        return Response(text="")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await stream_group(run=run, path="g", consumers=[HandlerConsumer(rec, "rec")], body=body,
                           step_type="claude_batch", buffer_size=64)
        done.set()
    deltas = [at for at, e in zip(seen_at, rec.events, strict=True) if isinstance(e, Delta)]
    assert len(deltas) == 100
    per_pass = max(deltas.count(at) for at in set(deltas))
    assert per_pass >= 20, per_pass  # many events in one pass: the pump drained what was waiting
    assert len(set(deltas)) <= 50
    check_invariants(rec.events)


@pytest.mark.parametrize(("concurrency", "fan_in_fills"), [(1, True), (20, False)])
async def test_the_fan_in_holds_one_event_per_concurrent_sub_step(autojump_clock, concurrency, fan_in_fills):
    # 20 sub-steps paced in lockstep send in the same scheduler pass (a delta each, and at most one
    # of them its last delta, Message and Done: they end at different times); a fan-in of
    # buffer_size=4 + concurrency=1 makes most of them wait for the pump, 4 + 20 lets every one through
    run = RunContext(run_id="r", origin=trio.current_time())
    provider = ByStep(
        [call_script([("text", [f"t{i}w{j} " for j in range(3 + i)])], delay=0.1) for i in range(20)]
    )
    responses = {}

    async def body(sub):
        async def one(i):
            responses[i] = await stream_step(
                run=run, path=f"g[{i}]", provider=provider, request=request(step=f"g[{i}]"), consumers=[sub()]
            )

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(one, i)
        return Response(text="")

    rec = Recorder(direct=0)
    await stream_group(run=run, path="g", consumers=[HandlerConsumer(rec, "rec", "block", 4)], body=body,
                       step_type="parallel_claude", buffer_size=4, concurrency=concurrency)
    filled = [i for i, r in responses.items() if r.metrics.queue_high_water]
    assert bool(filled) is fan_in_fills, filled
    if fan_in_fills:
        assert {responses[i].metrics.queue_high_water for i in filled} == {4 + concurrency}
    assert sum(isinstance(e, Delta) for e in rec.events) == sum(3 + i for i in range(20))
    check_invariants(rec.events)


async def test_the_groups_own_events_envelope_and_failed_message(autojump_clock):
    rec = Recorder()

    async def body(sub):
        await trio.sleep(1.5)
        raise RuntimeError("boom")

    origin = trio.current_time() - 10.0  # the run began before this step
    with pytest.raises(RuntimeError) as info:
        await stream_group(
            run=RunContext(run_id="r", origin=origin), path="g", consumers=[HandlerConsumer(rec, "r")],
            body=body, step_type="parallel_claude", model="m-1",
        )
    started, failed = rec.events
    assert (started.provider, started.model, started.step_type) == ("group", "m-1", "parallel_claude")
    assert (started.run_id, started.step, started.attempt, started.seq) == ("r", "g", 1, 1)
    assert started.at == pytest.approx(10.0) and failed.at == pytest.approx(11.5)
    assert failed.seq == 2 and failed.message == "boom" and failed.partial is None
    assert info.value is failed.error


def _fail_fast_body(run, provider, n):
    """A parallel body of *n* sub-steps ``g[i]``: the first failure cancels the others (fail_fast)."""

    async def body(sub):
        async with trio.open_nursery() as nursery:

            async def one(i):
                try:
                    await stream_step(
                        run=run, path=f"g[{i}]", provider=provider, request=request(step=f"g[{i}]"), consumers=[sub()]
                    )
                except Exception:
                    nursery.cancel_scope.cancel()  # fail_fast
                    raise

            for i in range(n):
                nursery.start_soon(one, i)
        return Response(text="")

    return body


@pytest.mark.parametrize(("n", "delay", "buffer"), [(200, 0.01, 64), (30, 5.0, 1), (200, 0.02, 1)])
async def test_fail_fast_with_a_slow_handler_keeps_every_sub_steps_terminal(autojump_clock, n, delay, buffer):
    """Issue 14, item 2: the first failure cancels the other sub-steps while a slow handler lags.

    The cancelled sub-steps' events in flight wait in the fan-in for the slow handler. Their
    terminal events must still reach the run's stream, one each, whatever the handler's pace;
    and a handler at 10 ms an event gets them all too (their events in flight are dropped)."""
    from sluiceway._errors import StreamInterruptedError

    run_send, run_recv = trio.open_memory_channel(100_000)  # a fast reader of the run's stream
    run = RunContext(run_id="r", origin=trio.current_time(), events=run_send)
    scripts_ = [call_script([("text", [f"t{i}w{j} " for j in range(40)])], delay=0.005) for i in range(n)]
    scripts_[7] = [*call_script([("text", ["a ", "b ", "c "])], first_delay=0.2)[:5], StreamInterruptedError("dropped")]
    provider = ByStep(scripts_)
    rec = Recorder(delay=delay, batch=False)

    body = _fail_fast_body(run, provider, n)

    with pytest.raises(BaseExceptionGroup):
        await stream_group(run=run, path="g", consumers=[HandlerConsumer(rec, "slow", "block", buffer)], body=body,
                           step_type="parallel_claude", concurrency=n, buffer_size=buffer)
    run_send.close()
    on_run = [e async for e in run_recv]
    views = [("run stream", on_run)] + ([("handler", rec.events)] if delay < 1 else [])
    for name, events in views:
        started = [e.step for e in events if isinstance(e, StepStarted)]
        assert len(started) == n + 1, name
        ends = {}
        for e in events:
            if isinstance(e, Done | Failed | Cancelled):
                ends[e.step] = ends.get(e.step, 0) + 1
        assert [s for s in started if ends.get(s) != 1] == [], name
        check_invariants(events)
    assert isinstance(on_run[-1], Failed) and on_run[-1].step == "g"
    assert rec.close_count == 1


async def test_fail_fast_cancelled_sub_steps_never_wait_on_a_full_fan_in(autojump_clock):
    """The fan-in holds only StepStarted and terminal events (nothing to drop) and the handler
    takes 5 s an event: the cancelled sub-steps' terminals are taken over, not waited on (their
    2 s bound would run out), and reach the handler after their StepStarted."""
    from sluiceway._errors import StreamInterruptedError

    n = 12
    run = RunContext(run_id="r", origin=trio.current_time())
    scripts_ = [call_script([("text", ["late "])], first_delay=100.0) for _ in range(n)]
    scripts_[0] = [StreamInterruptedError("dropped")]
    provider = ByStep(scripts_)
    rec = Recorder(delay=5.0, batch=False)

    body = _fail_fast_body(run, provider, n)

    with pytest.raises(BaseExceptionGroup):
        await stream_group(run=run, path="g", consumers=[HandlerConsumer(rec, "slow", "block", 1)], body=body,
                           step_type="parallel_claude", concurrency=n, buffer_size=1)
    check_invariants(rec.events)
    assert [type(e).__name__ for e in rec.events if e.step == "g[0]"] == ["StepStarted", "Failed"]
    for i in range(1, n):
        assert [type(e).__name__ for e in rec.events if e.step == f"g[{i}]"] == ["StepStarted", "Cancelled"], i
    assert isinstance(rec.events[-1], Failed) and rec.events[-1].step == "g"
