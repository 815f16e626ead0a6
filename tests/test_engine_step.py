"""stream_step: envelope, accumulation, tool loop, retries, terminal events, handler policies."""

from __future__ import annotations

import json
import warnings

import pytest
import trio
from engine_helpers import Recorder, ScriptedProvider, call_script, request
from sluiceway.engine import (
    BlockStart,
    BlockStop,
    Cancelled,
    ChannelConsumer,
    Delta,
    Done,
    Failed,
    HandlerConsumer,
    HandlerWarning,
    InputJsonChunk,
    Message,
    MessageStart,
    MessageStop,
    Response,
    Retrying,
    RunContext,
    StepStarted,
    TextBlock,
    ThinkingBlock,
    ThinkingDelta,
    ToolInputDelta,
    ToolResult,
    ToolResultBlock,
    ToolUse,
    ToolUseBlock,
    Usage,
    stream_step,
)
from sluiceway.engine._actors import _after_cancel, _deliver, _Held, direct_handle
from sluiceway.engine._provider_events import MessageDeltaInfo, TextChunk

from sluiceway._errors import (
    HandlerError,
    OverloadedError,
    ProviderError,
    RateLimitedError,
    StreamInterruptedError,
)
from sluiceway.testing import check_invariants


def names(events):
    return [type(e).__name__ for e in events]


async def run_step(provider, consumers, *, run=None, **kwargs):
    run = run or RunContext(run_id="r", origin=trio.current_time())
    return await stream_step(
        run=run, path=kwargs.pop("path", "s"), provider=provider, request=kwargs.pop("req", request()),
        consumers=consumers, **kwargs,
    )


async def test_text_stream_envelope_response_and_metrics(autojump_clock):
    provider = ScriptedProvider([call_script([("text", ["Hel", "lo ", "world"])], delay=0.5, first_delay=1.0)])
    rec = Recorder()
    start = trio.current_time()
    run = RunContext(run_id="run-1", origin=start - 10.0)
    response = await run_step(provider, [HandlerConsumer(rec, "rec")], run=run, path="draft")
    events = rec.events
    assert names(events) == ["StepStarted", "Delta", "Delta", "Delta", "Message", "Done"]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert {(e.run_id, e.step, e.attempt) for e in events} == {("run-1", "draft", 1)}
    # at counts from the run's origin, on the trio clock
    assert [e.at for e in events] == pytest.approx([10.0, 11.0, 11.5, 12.0, 12.0, 12.0])
    assert [e.content for e in events if isinstance(e, Delta)] == ["Hel", "lo ", "world"]
    started = events[0]
    assert isinstance(started, StepStarted) and started.provider == "scripted" and started.model == "m-1"
    message = events[4]
    assert isinstance(message, Message)
    assert message.role == "assistant" and message.content == (TextBlock("Hello world"),)
    assert message.usage == Usage(input_tokens=10, output_tokens=3) and message.stop_reason == "end_turn"
    assert isinstance(events[-1], Done) and events[-1].response == response
    assert response.text == "Hello world"
    assert response.usage == Usage(input_tokens=10, output_tokens=3)
    assert response.model == "m-1" and response.stop_reason == "end_turn" and response.status == "ok"
    assert response.messages == (message,)
    m = response.metrics
    assert m.time_to_first_token == pytest.approx(1.0)
    assert m.duration == pytest.approx(2.0)
    assert m.output_tokens_per_second == pytest.approx(3 / 1.0)
    assert (m.delta_count, m.message_count) == (3, 1)
    assert m.backpressure_wait == 0.0
    assert rec.close_count == 1 and not rec.after_close
    assert provider.open_streams == 0 and provider.closed_streams == 1
    check_invariants(events)


async def test_first_delta_reaches_handler_when_produced(autojump_clock):
    provider = ScriptedProvider([call_script([("text", ["a", "b", "c", "d"])], delay=0.25, first_delay=3.0)])
    fast, batched = Recorder(batch=False), Recorder()
    await run_step(provider, [HandlerConsumer(fast, "f"), HandlerConsumer(batched, "b", "coalesce", 0)])
    produced = [t for t, item in provider.produced if isinstance(item, TextChunk)]
    assert produced == pytest.approx([t0 := produced[0], t0 + 0.25, t0 + 0.5, t0 + 0.75])
    for rec in (fast, batched):
        got = [t for t, e in zip(rec.times, rec.events, strict=True) if isinstance(e, Delta)]
        assert got == produced  # same virtual instant: no added latency


async def test_usage_is_cumulative_per_call_and_summed_over_calls(autojump_clock):
    script = [
        MessageStart(model="m-2", usage=Usage(input_tokens=7, output_tokens=1, cache_read_input_tokens=4)),
        BlockStart(0, "text"),
        TextChunk(0, "x"),
        MessageDeltaInfo(usage=Usage(output_tokens=3)),
        TextChunk(0, "y"),
        BlockStop(0),
        MessageDeltaInfo(stop_reason="end_turn", usage=Usage(output_tokens=9)),
        MessageStop(),
    ]
    rec = Recorder()
    response = await run_step(ScriptedProvider([script]), [HandlerConsumer(rec, "r")])
    assert response.usage == Usage(input_tokens=7, output_tokens=9, cache_read_input_tokens=4)
    assert response.model == "m-2"
    calls = []
    response = await run_step(
        ScriptedProvider([script, script]),
        [HandlerConsumer(Recorder(), "r")],
        cost=lambda model, usage: calls.append((model, usage)) or usage.output_tokens * 0.5,
    )
    assert response.cost_usd == pytest.approx(4.5)
    assert calls[-1] == ("m-2", Usage(input_tokens=7, output_tokens=9, cache_read_input_tokens=4))


async def test_thinking_and_tool_blocks(autojump_clock):
    pieces = ['{"pa', 'th": "a.t', 'xt", "n": [1, ', "2]}"]
    script = call_script(
        [("thinking", ["hmm ", "ok"]), ("text", ["Let me look."]), ("tool", "tu_1", "Read", pieces)],
        delay=0.1,
    )
    script.insert(script.index(BlockStop(0)), ThinkingChunk_sig := _sig())
    rec = Recorder()
    response = await run_step(ScriptedProvider([script]), [HandlerConsumer(rec, "r")])
    ev = rec.events
    assert [e.content for e in ev if isinstance(e, ThinkingDelta)] == ["hmm ", "ok"]
    tool_deltas = [e for e in ev if isinstance(e, ToolInputDelta)]
    assert [e.partial_json for e in tool_deltas] == pieces
    assert {(e.tool_use_id, e.index) for e in tool_deltas} == {("tu_1", 2)}
    (tool_use,) = [e for e in ev if isinstance(e, ToolUse)]
    assert (tool_use.tool_use_id, tool_use.name, tool_use.input) == ("tu_1", "Read", {"path": "a.txt", "n": [1, 2]})
    # ToolUse comes right after the block's last piece, before the Message
    assert names(ev).index("ToolUse") == names(ev).index("Message") - 1
    (message,) = [e for e in ev if isinstance(e, Message)]
    assert message.content == (
        ThinkingBlock("hmm ok", ThinkingChunk_sig.signature),
        TextBlock("Let me look."),
        ToolUseBlock("tu_1", "Read", {"path": "a.txt", "n": [1, 2]}),
    )
    assert response.text == "Let me look." and response.stop_reason == "tool_use"
    assert response.metrics.delta_count == 2 + 1 + 4
    check_invariants(ev)


def _sig():
    from sluiceway.engine import ThinkingChunk

    return ThinkingChunk(0, "", signature="sig-1")


class Tools:
    def __init__(self):
        self.calls = []

    def definitions(self):
        return ({"name": "Read", "description": "read", "input_schema": {"type": "object"}},)

    async def run(self, name, input):
        self.calls.append((name, input, trio.current_time()))
        await trio.sleep(2.0)
        if input.get("path") == "missing":
            return "no such file", True
        return f"contents of {input['path']}", False


async def test_tool_loop_runs_tools_and_calls_again(autojump_clock):
    first = call_script(
        [("text", ["Reading."]), ("tool", "t1", "Read", ['{"path": "a"}']), ("tool", "t2", "Read", ['{"path": "missing"}'])]
    )
    second = call_script([("text", ["Done ", "reading."])])
    provider = ScriptedProvider([first, second])
    tools = Tools()
    rec = Recorder()
    response = await run_step(provider, [HandlerConsumer(rec, "r")], tool_runner=tools, max_turns=5)
    assert names(rec.events) == [
        "StepStarted", "Delta", "ToolInputDelta", "ToolUse", "ToolInputDelta", "ToolUse", "Message",
        "ToolResult", "ToolResult", "Delta", "Delta", "Message", "Done",
    ]
    results = [e for e in rec.events if isinstance(e, ToolResult)]
    assert [(r.tool_use_id, r.name, r.content, r.is_error) for r in results] == [
        ("t1", "Read", "contents of a", False),
        ("t2", "Read", "no such file", True),
    ]
    assert [c[:2] for c in tools.calls] == [("Read", {"path": "a"}), ("Read", {"path": "missing"})]
    r0, r1 = provider.requests
    assert r0.tools == tools.definitions() and r0.turn == 0
    assert r1.turn == 1 and r1.tools == tools.definitions()
    assert r1.messages[0] == {"role": "user", "content": "hi"}
    assert r1.messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "t1", "name": "Read", "input": {"path": "a"}},
            {"type": "tool_use", "id": "t2", "name": "Read", "input": {"path": "missing"}},
        ],
    }
    assert r1.messages[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "contents of a", "is_error": False},
            {"type": "tool_result", "tool_use_id": "t2", "content": "no such file", "is_error": True},
        ],
    }
    assert response.text == "Reading.Done reading."
    assert response.status == "ok" and response.stop_reason == "end_turn"
    assert [m.role for m in response.messages] == ["assistant", "user", "assistant"]
    assert response.messages[1].content == (
        ToolResultBlock("t1", "contents of a", False),
        ToolResultBlock("t2", "no such file", True),
    )
    assert response.messages[1].seq == results[-1].seq
    assert response.metrics.message_count == 3
    assert response.usage.input_tokens == 20  # summed over both calls
    check_invariants(rec.events)


async def test_max_turns_ends_with_status_not_crash(autojump_clock):
    call = call_script([("tool", "t", "Read", ['{"path": "a"}'])])
    provider = ScriptedProvider([call, call, call])
    rec = Recorder()
    response = await run_step(provider, [HandlerConsumer(rec, "r")], tool_runner=Tools(), max_turns=2)
    assert len(provider.requests) == 2
    assert response.status == "max_turns" and response.stop_reason == "tool_use"
    assert isinstance(rec.events[-1], Done) and rec.events[-1].response.status == "max_turns"
    assert names(rec.events).count("ToolResult") == 1


async def test_tool_use_without_runner_just_ends(autojump_clock):
    provider = ScriptedProvider([call_script([("tool", "t", "Read", ['{"path": "a"}'])])])
    response = await run_step(provider, [])
    assert response.stop_reason == "tool_use" and response.status == "ok" and len(provider.requests) == 1


class Policy:
    """A tiny retry policy: *delays[i]* after failed attempt i+1; None gives up."""

    def __init__(self, delays, fallback=None):
        self.delays = list(delays)
        self.decisions = []
        self.fallback = fallback

    def decide(self, error, attempt):
        self.decisions.append((type(error).__name__, attempt))
        return self.delays[attempt - 1] if attempt - 1 < len(self.delays) else None

    def model_for(self, attempt, error, model):
        return self.fallback if self.fallback and isinstance(error, OverloadedError) else model


def failing_call(pieces, error, delay=0.1):
    script = call_script([("text", pieces)], delay=delay)
    cut = max(i for i, item in enumerate(script) if isinstance(item, TextChunk)) + 1
    return [*script[:cut], error]


async def test_retry_emits_retrying_sleeps_and_keeps_only_last_attempt(autojump_clock):
    provider = ScriptedProvider(
        [
            failing_call(["old ", "text"], OverloadedError("overloaded")),
            call_script([("text", ["new ", "text"])], delay=0.1, model="m-fb"),
        ]
    )
    policy = Policy([1.5], fallback="m-fb")
    rec = Recorder()
    response = await run_step(provider, [HandlerConsumer(rec, "r")], retry=policy)
    ev = rec.events
    assert names(ev) == [
        "StepStarted", "Delta", "Delta", "Retrying", "Delta", "Delta", "Message", "Done",
    ]
    retrying = ev[3]
    assert isinstance(retrying, Retrying)
    assert (retrying.attempt, retrying.next_attempt, retrying.delay) == (1, 2, 1.5)
    assert retrying.output_may_have_started is True and "overloaded" in retrying.reason
    assert [e.attempt for e in ev] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [e.seq for e in ev] == list(range(1, 9))
    assert ev[4].at - retrying.at == pytest.approx(1.5 + 0.1)  # slept 1.5 s on trio's clock
    assert response.text == "new text" and len(response.messages) == 1
    assert response.messages[0].attempt == 2
    assert [r.attempt for r in provider.requests] == [1, 2]
    assert [r.model for r in provider.requests] == ["m-1", "m-fb"]
    assert policy.decisions == [("OverloadedError", 1)]
    check_invariants(ev)


async def test_a_retry_carries_the_superseded_attempts_usage_and_cost(autojump_clock):
    provider = ScriptedProvider(
        [
            failing_call(["old"], OverloadedError("overloaded")),  # streamed, then failed: billed
            [RateLimitedError("slow down")],  # refused before any stream: nothing billed
            call_script([("text", ["new"])], input_tokens=12),
        ]
    )

    def cost(model, usage):
        return usage.input_tokens * 0.01 + usage.output_tokens * 0.1

    rec = Recorder()
    response = await run_step(provider, [HandlerConsumer(rec, "r")], retry=Policy([1.0, 1.0]), cost=cost)
    retries = [e for e in rec.events if isinstance(e, Retrying)]
    assert [r.usage for r in retries] == [Usage(input_tokens=10, output_tokens=1), Usage()]
    assert [r.cost_usd for r in retries] == [pytest.approx(0.2), 0.0]
    assert response.text == "new" and response.usage.input_tokens == 12  # the final attempt's alone
    assert response.cost_usd == pytest.approx(cost(None, response.usage))
    assert response.superseded_usage == Usage(input_tokens=10, output_tokens=1)
    assert response.superseded_cost_usd == pytest.approx(0.2)
    assert rec.events[-1].response == response
    check_invariants(rec.events)


async def test_superseded_cost_is_none_when_a_price_is_unknown_and_zero_without_retries(autojump_clock):
    retried = ScriptedProvider(
        [failing_call(["old"], OverloadedError("overloaded")), call_script([("text", ["new"])])]
    )
    response = await run_step(retried, [], retry=Policy([1.0]), cost=lambda model, usage: None)
    assert response.superseded_usage == Usage(input_tokens=10, output_tokens=1)
    assert response.superseded_cost_usd is None
    once = await run_step(ScriptedProvider([call_script([("text", ["a"])])]), [], cost=lambda m, u: 1.0)
    assert once.superseded_usage == Usage() and once.superseded_cost_usd == 0.0


async def test_retry_after_wins_when_larger_and_give_up_fails(autojump_clock):
    provider = ScriptedProvider(
        [
            [RateLimitedError("slow down", retry_after=7.0)],
            [RateLimitedError("slow down", retry_after=0.5)],
            failing_call(["x"], StreamInterruptedError("lost")),
        ]
    )
    rec = Recorder()
    start = trio.current_time()
    with pytest.raises(StreamInterruptedError) as info:
        await run_step(provider, [HandlerConsumer(rec, "r")], retry=Policy([1.0, 1.0]), path="robust")
    assert info.value.step == "robust"
    retries = [e for e in rec.events if isinstance(e, Retrying)]
    assert [(r.delay, r.output_may_have_started) for r in retries] == [(7.0, False), (1.0, False)]
    assert trio.current_time() - start == pytest.approx(8.0 + 0.1)
    failed = rec.events[-1]
    assert isinstance(failed, Failed) and failed.error is info.value and failed.attempt == 3
    assert failed.partial is not None and failed.partial.text == "x"
    assert rec.close_count == 1
    check_invariants(rec.events)


async def test_provider_error_fails_step_and_names_it(autojump_clock):
    provider = ScriptedProvider([failing_call(["par", "tial"], OverloadedError("busy"))])
    rec, chan_send = Recorder(), None
    chan_send, chan_recv = trio.open_memory_channel(100)
    with pytest.raises(OverloadedError) as info:
        await run_step(provider, [HandlerConsumer(rec, "r"), ChannelConsumer(chan_send)], path="draft")
    assert info.value.step == "draft" and info.value.message == "busy"
    assert names(rec.events) == ["StepStarted", "Delta", "Delta", "Failed"]
    assert rec.events[-1].partial.text == "partial" and rec.events[-1].message == str(info.value)
    assert rec.events[-1].partial.usage == Usage(input_tokens=10, output_tokens=1)  # the call's usage so far
    got = [e async for e in chan_recv]  # closed after the terminal
    assert got == rec.events
    assert rec.close_count == 1 and provider.open_streams == 0


async def test_stream_without_message_stop_is_interrupted(autojump_clock):
    script = call_script([("text", ["a"])])[:-1]
    with pytest.raises(StreamInterruptedError):
        await run_step(ScriptedProvider([script]), [])


async def test_bad_tool_json_is_a_provider_error(autojump_clock):
    script = call_script([("tool", "t", "Read", ['{"a": '])])
    rec = Recorder()
    with pytest.raises(ProviderError, match="not JSON"):
        await run_step(ScriptedProvider([script]), [HandlerConsumer(rec, "r")])
    assert isinstance(rec.events[-1], Failed)


async def test_cancelled_delivers_terminal_closes_everything_and_propagates(autojump_clock):
    provider = ScriptedProvider([call_script([("text", [f"w{i} " for i in range(100)])], delay=0.1)])
    slow = Recorder(delay=1.0)
    quick = Recorder(policy="coalesce")
    run_send, run_recv = trio.open_memory_channel(1000)
    pass_send, pass_recv = trio.open_memory_channel(1000)
    run = RunContext(run_id="r", origin=trio.current_time(), events=run_send)
    with trio.move_on_after(2.05) as scope:
        await run_step(
            provider,
            [HandlerConsumer(slow, "slow", "block", 2), HandlerConsumer(quick, "quick", "coalesce", 2),
             ChannelConsumer(pass_send)],
            run=run,
        )
    assert scope.cancelled_caught
    assert provider.open_streams == 0
    for rec in (slow, quick):
        assert rec.close_count == 1 and not rec.after_close
        assert isinstance(rec.events[-1], Cancelled) and names(rec.events).count("Cancelled") == 1
        check_invariants(rec.events)
    cancelled = quick.events[-1]
    assert cancelled.partial is not None and cancelled.partial.text.startswith("w0 w1 ")
    # the slow block handler (1 s per event, buffer 2) held the provider back: backpressure
    assert 3 <= provider.chunks <= 6
    slow_deltas = [e for e in slow.events if isinstance(e, Delta)]
    assert len(slow_deltas) <= 3  # in flight when cancelled: dropped, only the terminal follows
    passthrough = [e async for e in pass_recv]
    assert passthrough[-1] == cancelled
    # every delta but the one being sent when cancelled (blocked on the slow handler)
    assert names(passthrough).count("Delta") == provider.chunks - 1
    assert cancelled.partial.text.startswith("".join(e.content for e in passthrough if isinstance(e, Delta)))
    run_send.send_nowait(cancelled)  # the run's channel itself stays open (only the clone closed)
    run_send.close()
    run_events = [e async for e in run_recv]
    assert run_events[:-1] == passthrough


async def test_channel_consumer_sees_events_live_then_end_of_channel(autojump_clock):
    provider = ScriptedProvider([call_script([("text", ["a", "b", "c"])], delay=1.0)])
    send, recv = trio.open_memory_channel(0)
    seen = []

    async def reader():
        async with recv:
            async for event in recv:
                seen.append((trio.current_time(), event))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        start = trio.current_time()
        await run_step(provider, [ChannelConsumer(send)])
    assert names(e for _, e in seen) == ["StepStarted", "Delta", "Delta", "Delta", "Message", "Done"]
    assert [t - start for t, _ in seen] == pytest.approx([0, 1, 2, 3, 3, 3])


async def test_coalesce_channel_consumer_merges_and_closes(autojump_clock):
    provider = ScriptedProvider([call_script([("text", [f"{i}," for i in range(50)])])])
    send, recv = trio.open_memory_channel(0)
    seen = []

    async def slow_reader():
        async with recv:
            async for event in recv:
                seen.append(event)
                await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_reader)
        response = await run_step(provider, [ChannelConsumer(send, "coalesce", 1)])
    deltas = [e for e in seen if isinstance(e, Delta)]
    assert "".join(d.content for d in deltas) == response.text
    assert len(deltas) < 50
    assert names(seen)[-2:] == ["Message", "Done"]


async def test_isolated_handler_warns_once_and_run_goes_on(autojump_clock):
    provider = ScriptedProvider([call_script([("text", [f"{i} " for i in range(20)])], delay=0.1)])
    bad = Recorder(fail_at=3, batch=False)
    good = Recorder()
    with pytest.warns(HandlerWarning, match="handler 'bad'.*boom at 3") as warned:
        response = await run_step(
            provider, [HandlerConsumer(bad, "bad", "block", 0), HandlerConsumer(good, "good", "block", 0)]
        )
    assert len([w for w in warned if issubclass(w.category, HandlerWarning)]) == 1
    assert response.text == "".join(f"{i} " for i in range(20))
    assert len(bad.events) == 3 and bad.calls == 4 and bad.close_count == 1
    assert isinstance(good.events[-1], Done) and good.close_count == 1
    check_invariants(good.events)


async def test_fail_policy_fails_step_with_handler_error(autojump_clock):
    provider = ScriptedProvider([call_script([("text", [f"{i} " for i in range(20)])], delay=0.1)])
    bad = Recorder(fail_at=4)
    good = Recorder()
    with pytest.raises(HandlerError) as info:
        await run_step(
            provider,
            [HandlerConsumer(bad, "file", "block", 0), HandlerConsumer(good, "good", "block", 0)],
            on_handler_error="fail",
        )
    assert info.value.handler == "file" and isinstance(info.value.__cause__, RuntimeError)
    failed = good.events[-1]
    assert isinstance(failed, Failed) and failed.error is info.value
    assert len([e for e in good.events if isinstance(e, Delta)]) < 20  # the step stopped early
    assert provider.open_streams == 0
    assert bad.close_count == 1 and good.close_count == 1
    check_invariants(good.events)


async def test_fail_policy_fails_even_where_warnings_are_not_errors(autojump_clock):
    # under -W error an isolating handler's warning fails the step too; with warnings shown,
    # only "fail" fails it, and it warns nothing
    provider = ScriptedProvider([call_script([("text", ["a ", "b ", "c "])], delay=0.1)])
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(HandlerError):
            await run_step(provider, [HandlerConsumer(Recorder(fail_at=1), "bad")], on_handler_error="fail")
    assert not [w for w in shown if issubclass(w.category, HandlerWarning)]


async def test_failing_aclose(autojump_clock):
    provider = ScriptedProvider([call_script([("text", ["a"])])] * 2)
    with pytest.warns(HandlerWarning, match="aclose raised"):
        await run_step(provider, [HandlerConsumer(Recorder(fail_close=True), "c")])
    rec = Recorder(fail_close=True)
    with pytest.raises(HandlerError, match="aclose raised"):
        await run_step(provider, [HandlerConsumer(rec, "c")], on_handler_error="fail")
    assert isinstance(rec.events[-1], Done) and rec.close_count == 1


async def test_seq_and_json_of_many_tool_pieces(autojump_clock):
    value = {"k": "v" * 500, "list": list(range(100))}
    raw = json.dumps(value)
    pieces = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    script = call_script([("tool", "big", "Write", pieces)])
    rec = Recorder()
    await run_step(ScriptedProvider([script]), [HandlerConsumer(rec, "r", "coalesce", 0)])
    (use,) = [e for e in rec.events if isinstance(e, ToolUse)]
    assert use.input == value
    assert "".join(e.partial_json for e in rec.events if isinstance(e, ToolInputDelta)) == raw


async def test_stream_step_without_handlers_returns_response(autojump_clock):
    script = [MessageStart(), BlockStart(0, "text"), TextChunk(0, "hi"), BlockStop(0), MessageStop()]
    response = await run_step(ScriptedProvider([script]), [])
    assert response.text == "hi" and response.model == "m-1" and response.stop_reason is None


async def test_input_json_chunk_before_any_consumer(autojump_clock):
    script = call_script([("tool", "t", "X", [])])
    response = await run_step(ScriptedProvider([script]), [])
    assert response.messages[0].content == (ToolUseBlock("t", "X", {}),)
    assert InputJsonChunk  # imported for the scripts above


class HangingClose(Recorder):
    async def aclose(self):
        self.close_count += 1
        await trio.sleep_forever()


async def test_hanging_aclose_is_abandoned_after_the_close_timeout(autojump_clock):
    from sluiceway.engine._actors import HANDLER_CLOSE_TIMEOUT

    rec = HangingClose()
    start = trio.current_time()
    response = await run_step(ScriptedProvider([call_script([("text", ["a"])])]), [HandlerConsumer(rec, "h")])
    assert response.text == "a" and rec.close_count == 1
    assert trio.current_time() - start == pytest.approx(HANDLER_CLOSE_TIMEOUT)


async def test_isolate_under_warnings_as_errors_fails_the_step(autojump_clock):
    # pytest runs with filterwarnings=error: the HandlerWarning cannot be shown, so the step fails instead
    rec = Recorder(fail_at=1)
    with pytest.raises(HandlerError, match="handler 'h'"):
        await run_step(ScriptedProvider([call_script([("text", ["a", "b"])], delay=1.0)]), [HandlerConsumer(rec, "h")])
    assert rec.close_count == 1


async def test_unexpected_provider_exception_fails_and_propagates(autojump_clock):
    rec = Recorder()
    with pytest.raises(KeyError):
        await run_step(ScriptedProvider([[MessageStart(), KeyError("bug")]]), [HandlerConsumer(rec, "h")])
    assert names(rec.events) == ["StepStarted", "Failed"] and isinstance(rec.events[-1].error, KeyError)


async def test_run_started_and_finished_helpers(autojump_clock):
    from sluiceway.engine import RunFinished, RunStarted, emit_run_finished, emit_run_started

    send, recv = trio.open_memory_channel(10)
    run = RunContext.start("run-9", send)
    await trio.sleep(2)
    started = await emit_run_started(run, "demo", ["a", "b"])
    await run_step(ScriptedProvider([call_script([("text", ["x"])])]), [], run=run, path="a")
    finished = await emit_run_finished(run, "ok", {"a": {"status": "ok"}})
    send.close()
    events = [e async for e in recv]
    assert events[0] == started and isinstance(started, RunStarted)
    assert (started.run_id, started.step, started.at, started.steps) == ("run-9", "", 2.0, ("a", "b"))
    assert events[-1] == finished and isinstance(finished, RunFinished) and finished.status == "ok"
    assert names(events) == ["RunStarted", "StepStarted", "Delta", "Message", "Done", "RunFinished"]
    check_invariants(events)
    recv.close()
    assert await emit_run_finished(run, "failed")  # a closed stream is not an error


async def test_chunks_without_block_start_still_count(autojump_clock):
    script = [MessageStart(), TextChunk(0, "a"), TextChunk(0, "b"), BlockStop(0), MessageStop()]
    rec = Recorder()
    response = await run_step(ScriptedProvider([script]), [HandlerConsumer(rec, "h")])
    assert response.text == "ab" and response.messages[0].content == (TextBlock("ab"),)
    check_invariants(rec.events)


async def test_bad_setup_still_closes_what_it_was_given(autojump_clock):
    rec = Recorder()
    send, recv = trio.open_memory_channel(1)
    with pytest.raises(ValueError):
        await run_step(
            ScriptedProvider([call_script([("text", ["a"])])]),
            [HandlerConsumer(rec, "ok"), ChannelConsumer(send), HandlerConsumer(Recorder(), "bad", "block", -1)],
        )
    assert rec.close_count == 1
    with pytest.raises(trio.EndOfChannel):
        await recv.receive()


async def test_closed_run_stream_is_skipped(autojump_clock):
    send, _ = trio.open_memory_channel(1)
    send.close()
    run = RunContext(run_id="r", origin=trio.current_time(), events=send)
    response = await run_step(ScriptedProvider([call_script([("text", ["a"])])]), [], run=run)
    assert response.text == "a"


async def test_a_broken_handler_warns_once_even_if_aclose_fails_too(autojump_clock):
    rec = Recorder(fail_at=2, fail_close=True)
    with pytest.warns(HandlerWarning) as warned:
        await run_step(ScriptedProvider([call_script([("text", ["a", "b", "c"])])]), [HandlerConsumer(rec, "h")])
    assert len(warned) == 1 and "handle_batch raised RuntimeError: boom at 2" in str(warned[0].message)
    assert rec.close_count == 1


# -- terminal delivery interrupted, and a retry after a completed tool turn (issue 20: M04, M06) ----


def terminals(events):
    return [e for e in events if isinstance(e, Done | Failed | Cancelled)]


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("cancel_at", [2.5 + 0.25 * i for i in range(11)])
async def test_cancel_while_done_is_delivered_still_gives_each_handler_a_terminal(autojump_clock, batch, cancel_at):
    """Cancelled around 3.5 s, while Done waits for room in the slow handler's channel (when exactly
    depends on trio's schedule): Done still goes to the rest; a handler that lost the event it was
    handling reads it as Cancelled(partial)."""
    provider = ScriptedProvider([call_script([("text", ["a", "b", "c"])])])
    slow = Recorder(delay=1.0, batch=batch)  # 1 s per event, behind a channel of 1: Done waits for it
    quick = Recorder()
    run_send, run_recv = trio.open_memory_channel(100)
    run = RunContext(run_id="r", origin=trio.current_time(), events=run_send)
    with trio.move_on_after(cancel_at):
        await run_step(provider, [HandlerConsumer(slow, "slow", "block", 1), HandlerConsumer(quick, "quick")], run=run)
    run_send.close()
    sent = [e async for e in run_recv]
    (terminal,) = terminals(sent)
    assert sent[-1] is terminal
    for rec in (slow, quick):
        assert rec.close_count == 1 and not rec.after_close
        assert len(terminals(rec.events)) == 1
        assert rec.events[-1] == terminal or (isinstance(terminal, Done) and rec.events[-1] == terminal.as_cancelled())
        check_invariants(rec.events)
    if isinstance(terminal, Done):
        assert terminal.response.text == "abc"
        assert quick.events == sent  # the quick handler lost nothing


@pytest.mark.parametrize("cancel_at", [0.5 * i for i in range(1, 14)])
async def test_cancelled_at_any_time_each_handler_gets_one_terminal_last(autojump_clock, cancel_at):
    provider = ScriptedProvider([call_script([("text", ["a", "b", "c", "d"])], delay=0.3)])
    slow = Recorder(delay=1.0, batch=False)
    quick = Recorder(policy="coalesce")
    run_send, run_recv = trio.open_memory_channel(100)
    run = RunContext(run_id="r", origin=trio.current_time(), events=run_send)
    with trio.move_on_after(cancel_at):
        await run_step(
            provider, [HandlerConsumer(slow, "slow", "block", 1), HandlerConsumer(quick, "quick", "coalesce", 1)],
            run=run,
        )
    run_send.close()
    sent = [e async for e in run_recv]
    (terminal,) = terminals(sent)
    assert sent[-1] is terminal
    for rec in (slow, quick):
        assert rec.close_count == 1
        assert len(terminals(rec.events)) == 1
        assert rec.events[-1] == terminal or (isinstance(terminal, Done) and rec.events[-1] == terminal.as_cancelled())
        check_invariants(rec.events)


class OneTool:
    def __init__(self):
        self.calls = []

    def definitions(self):
        return ({"name": "Read", "input_schema": {"type": "object"}},)

    async def run(self, name, input):
        self.calls.append((name, input))
        await trio.sleep(0.5)
        return "the file", False


@pytest.mark.parametrize("immediate_failures", [0, 1])
async def test_a_retry_after_a_completed_tool_turn_keeps_nothing_of_the_superseded_attempt(
    autojump_clock, immediate_failures
):
    """Attempt 1 completes a tool turn, then its next call streams "partial answer" and is
    overloaded; attempt 2 (after *immediate_failures* attempts that fail before any output)
    repeats that call alone and answers "new".

    Issue 14's "retries resume, never redo" changed what this checks (it was written for a retry
    that restarted the whole tool loop): the finished tool turn is kept, not run again and not
    superseded; what stays out of the final response is the failed call's partial output.
    """
    tool_turn = call_script([("text", ["Reading."]), ("tool", "t1", "Read", ['{"path": "a"}'])])
    failed = failing_call(["partial ", "answer"], OverloadedError("busy"))
    scripts = [tool_turn, failed]
    scripts += [[OverloadedError("busy again")]] * immediate_failures
    scripts.append(call_script([("text", ["new"])]))
    provider = ScriptedProvider(scripts)
    tool = OneTool()
    rec = Recorder()
    response = await run_step(
        provider, [HandlerConsumer(rec, "r")], tool_runner=tool, max_turns=5, retry=Policy([0.5, 0.5])
    )
    last = 2 + immediate_failures
    assert response.text == "Reading.new"  # the kept turn's text, then the retried call's; no "partial answer"
    assert "partial" not in response.text
    assert [(m.role, m.attempt) for m in response.messages] == [("assistant", 1), ("user", 1), ("assistant", last)]
    assert response.metrics.delta_count == 3 and response.metrics.message_count == 3
    assert tool.calls == [("Read", {"path": "a"})]  # the finished tool call ran once
    assert names(rec.events).count("ToolUse") == 1 and names(rec.events).count("ToolResult") == 1
    retrying = [e for e in rec.events if isinstance(e, Retrying)]
    assert [r.output_may_have_started for r in retrying] == [True] + [False] * immediate_failures
    assert [r.next_attempt for r in retrying] == list(range(2, last + 1))
    # every retry repeats turn 1 with the conversation up to it: the tool turn and its result
    assert [r.turn for r in provider.requests] == [0] + [1] * (1 + 1 + immediate_failures)
    assert [r.attempt for r in provider.requests] == [1, *range(1, last + 1)]
    turn_1 = provider.requests[1].messages
    assert [m["role"] for m in turn_1] == ["user", "assistant", "user"]
    assert turn_1[2]["content"][0]["type"] == "tool_result"
    assert all(r.messages == turn_1 for r in provider.requests[2:])
    # the failed call's usage is superseded; the kept turn's counts in the response
    assert response.usage == Usage(input_tokens=20, output_tokens=3)  # one output token per delta
    assert response.superseded_usage == Usage(input_tokens=10, output_tokens=1)
    assert rec.events[-1] == Done(
        run_id="r", step="s", attempt=last, seq=rec.events[-1].seq, at=rec.events[-1].at, response=response
    )
    check_invariants(rec.events)


# ---- the handler actor's cancel path, directly: what a cancelled handler still gets ----


def _ev(kind, step, **kw):
    if kind is Done:
        kw.setdefault("response", Response(text=step))
    if kind is StepStarted:
        kw.setdefault("provider", "p")
    if kind is Delta:
        kw.setdefault("content", "x")
    return kind(run_id="r", step=step, **kw)


async def after_cancel(in_flight, *, batch=None, next=0, busy=False, atomic=False):
    """``_after_cancel`` over *in_flight*; without *batch*, as an actor cancelled before its first batch."""
    send, receive = trio.open_memory_channel(len(in_flight))
    for event in in_flight:
        send.send_nowait(event)
    send.close()
    held = _Held() if batch is None else _Held(atomic=atomic)
    if batch is not None:
        held.batch, held.next, held.busy = list(batch), next, busy
    return await _after_cancel(receive, held)


async def test_after_cancel_a_finished_step_loses_nothing_delivers_all_in_flight():
    in_flight = [_ev(Delta, "s"), _ev(Done, "s")]
    assert await after_cancel(in_flight) == ([], in_flight)
    # a relay cancelled in its send handled nothing: the batch's rest is in flight, not lost
    batch = [_ev(Delta, "s", content="a"), _ev(Delta, "s", content="b")]
    done = _ev(Done, "s")
    assert await after_cancel([done], batch=batch, next=0, busy=True, atomic=True) == ([], [*batch, done])
    assert await after_cancel([_ev(Delta, "s")]) == ([], [])  # no terminal: nothing to hand over


async def test_after_cancel_a_half_handled_event_makes_done_cancelled():
    batch = [_ev(Delta, "s", content="a"), _ev(Delta, "s", content="b")]
    done = _ev(Done, "s")
    first, last = await after_cancel([_ev(Delta, "s"), done], batch=batch, next=1, busy=True)
    assert first == [] and last == [done.as_cancelled()]


async def test_after_cancel_keeps_each_ended_sub_steps_start_and_terminal_in_order():
    cancelled = _ev(Cancelled, "g")
    in_flight = [
        _ev(Delta, "g"),  # the group's own events in flight: dropped, and the rest still read
        _ev(StepStarted, "g/a"), _ev(Delta, "g/a"), _ev(Done, "g/a"),  # lost a delta: Done -> Cancelled
        _ev(StepStarted, "g/c"), _ev(Done, "g/c"),  # lost nothing: stays Done
        _ev(Failed, "g/d", error=RuntimeError("x")),
        _ev(StepStarted, "g/b"), _ev(Delta, "g/b"),  # never ended: its start is dropped too
        cancelled,
    ]
    first, last = await after_cancel(in_flight, batch=[_ev(StepStarted, "g/c")], next=1)
    assert first == [
        in_flight[1], in_flight[3].as_cancelled(), in_flight[4], in_flight[5], in_flight[6],
    ]
    assert last == [cancelled]


async def test_after_cancel_the_event_being_handled_counts_as_lost_for_its_step():
    batch = [_ev(Delta, "g/b"), _ev(Delta, "g/a")]  # cancelled while handling g/a's delta
    in_flight = [_ev(Done, "g/a"), _ev(Done, "g/b"), _ev(Cancelled, "g")]
    first, last = await after_cancel(in_flight, batch=batch, next=2, busy=True)
    assert first == [in_flight[0].as_cancelled(), in_flight[1]]
    assert last == [in_flight[2]]


async def test_deliver_prefers_handle_batch():
    class Both:
        def __init__(self):
            self.calls = []

        async def handle(self, event):
            self.calls.append(("handle", event))

        async def handle_batch(self, events):
            self.calls.append(("batch", list(events)))

    class One(Both):
        handle_batch = None

    events = [_ev(Delta, "s"), _ev(Done, "s")]
    both, one = Both(), One()
    await _deliver(both, events)
    await _deliver(one, events)
    assert both.calls == [("batch", events)]
    assert one.calls == [("handle", events[0]), ("handle", events[1])]


def test_direct_handle_without_instance_dict_or_handle_batch():
    class Slotted:
        __slots__ = ()

        async def handle(self, event): ...

        def handle_nowait(self, event): ...

    class Plain:
        async def handle(self, event): ...

        def handle_nowait(self, event): ...

    slotted, plain = Slotted(), Plain()
    assert direct_handle(slotted) == slotted.handle_nowait
    assert direct_handle(plain) == plain.handle_nowait  # no handle_batch at any level
    plain.handle = lambda event: None  # an instance's own handle: direct calls would skip it
    assert direct_handle(plain) is None


async def test_a_handle_only_handler_error_names_handle(autojump_clock):
    provider = ScriptedProvider([call_script([("text", ["a", "b", "c"])])])
    with pytest.raises(HandlerError) as info:
        await run_step(provider, [HandlerConsumer(Recorder(batch=False, fail_at=1), "h")], on_handler_error="fail")
    assert "'h': handle raised RuntimeError: boom at 1" in str(info.value)


async def test_a_failing_aclose_is_the_handler_errors_cause(autojump_clock):
    provider = ScriptedProvider([call_script([("text", ["a"])])])
    with pytest.raises(HandlerError) as info:
        await run_step(provider, [HandlerConsumer(Recorder(fail_close=True), "c")], on_handler_error="fail")
    cause = info.value.__cause__
    assert cause is not None and f"aclose raised {type(cause).__name__}: {cause}" in str(info.value)


async def test_a_handler_failing_on_its_terminal_after_a_cancel_is_reported(autojump_clock):
    class FailsOnTerminal:
        closed = 0

        async def handle(self, event):
            if isinstance(event, (Done, Failed, Cancelled)):
                raise RuntimeError("no end")

        async def aclose(self):
            self.closed += 1

    provider = ScriptedProvider([call_script([("text", ["a", "b", "c", "d"])], delay=1.0)])
    bad = FailsOnTerminal()
    with pytest.warns(HandlerWarning, match="'bad': handle raised RuntimeError: no end"):
        with trio.move_on_after(2.5):
            await run_step(provider, [HandlerConsumer(bad, "bad")])
    assert bad.closed == 1


class _Closing:
    """A batch handler that records each batch's size and takes time to close."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.sizes = []
        self.events = []
        self.closed = False

    async def handle(self, event):
        await self.handle_batch([event])

    async def handle_batch(self, events):
        self.sizes.append(len(events))
        self.events += events
        if self.delay:
            await trio.sleep(self.delay)

    async def aclose(self):
        await trio.sleep(0.5)  # cancelled unless the close is shielded
        self.closed = True


async def test_a_cancelled_handler_gets_no_empty_batch_and_closes_shielded(autojump_clock):
    provider = ScriptedProvider([call_script([("text", ["a", "b", "c", "d"])], delay=1.0)])
    handler = _Closing()
    with trio.move_on_after(2.5):
        await run_step(provider, [HandlerConsumer(handler, "h")])
    assert isinstance(handler.events[-1], Cancelled)
    assert 0 not in handler.sizes
    assert handler.closed


async def test_a_slow_coalesce_handler_without_buffer_gets_the_merged_text(autojump_clock):
    provider = ScriptedProvider([call_script([("text", [f"{i} " for i in range(12)])], delay=0.1)])
    handler = _Closing(delay=1.0)
    response = await run_step(provider, [HandlerConsumer(handler, "h", "coalesce", 0)])
    assert "".join(e.content for e in handler.events if isinstance(e, Delta)) == response.text
    assert isinstance(handler.events[-1], Done) and handler.closed
    assert response.metrics.queue_high_water == 1
    check_invariants(handler.events)


def test_to_api_block_for_thinking_and_unknown_blocks():
    from sluiceway.engine._step import to_api_block

    assert to_api_block(ThinkingBlock("t", "sig")) == {"type": "thinking", "thinking": "t", "signature": "sig"}
    assert to_api_block(ThinkingBlock("t")) == {"type": "thinking", "thinking": "t"}
    with pytest.raises(TypeError, match="unknown content block 'x'"):
        to_api_block("x")


async def test_the_raised_error_and_the_cancellation_carry_the_terminals_partial(autojump_clock):
    rec = Recorder()
    with pytest.raises(OverloadedError) as info:
        await run_step(ScriptedProvider([failing_call(["par", "tial"], OverloadedError("busy"))]), [HandlerConsumer(rec, "r")])
    assert info.value.partial is rec.events[-1].partial and info.value.partial.text == "partial"
    provider = ScriptedProvider([call_script([("text", ["a ", "b ", "c ", "d "])], delay=1.0)])
    rec, caught = Recorder(), []
    with trio.move_on_after(2.5):
        try:
            await run_step(provider, [HandlerConsumer(rec, "r")])
        except BaseException as exc:
            caught.append(exc)
            raise
    cancelled = rec.events[-1]
    assert isinstance(cancelled, Cancelled) and cancelled.partial.text == "a b "
    assert caught[0].partial is cancelled.partial


async def test_step_started_names_the_step_type(autojump_clock):
    for kwargs, expected in [({}, "claude"), ({"step_type": "extract"}, "extract")]:
        rec = Recorder()
        await run_step(ScriptedProvider([call_script([("text", ["a"])])]), [HandlerConsumer(rec, "r")], **kwargs)
        assert rec.events[0].step_type == expected


async def test_max_turns_defaults_to_one_and_is_at_least_one(autojump_clock):
    for kwargs in ({}, {"max_turns": 0}):
        first = call_script([("tool", "t1", "Read", ['{"path": "a"}'])])
        provider = ScriptedProvider([first, call_script([("text", ["never"])])])
        response = await run_step(provider, [HandlerConsumer(Recorder(), "r")], tool_runner=Tools(), **kwargs)
        assert response.status == "max_turns" and "never" not in response.text


async def test_the_tool_results_user_turn_has_the_last_results_envelope(autojump_clock):
    first = call_script([("tool", "t1", "Read", ['{"path": "a"}'])])
    rec = Recorder()
    response = await run_step(
        ScriptedProvider([first, call_script([("text", ["ok"])])]), [HandlerConsumer(rec, "r")],
        tool_runner=Tools(), max_turns=2, path="p",
    )
    result = [e for e in rec.events if isinstance(e, ToolResult)][-1]
    (user,) = [m for m in response.messages if m.role == "user"]
    envelope = ("run_id", "step", "attempt", "seq", "at")
    assert [getattr(user, k) for k in envelope] == [getattr(result, k) for k in envelope]
    assert user.at > 0 and user.step == "p" and user.run_id == "r"


async def test_a_stream_without_message_stop_is_interrupted(autojump_clock):
    script = call_script([("text", ["a"])])[:-1]
    with pytest.raises(StreamInterruptedError) as info:
        await run_step(ScriptedProvider([script]), [HandlerConsumer(Recorder(), "r")], path="p")
    assert info.value.step == "p" and "the stream ended before message_stop" in str(info.value)


def test_terminal_response_and_attach_partial():
    from sluiceway.engine._terminal import attach_partial, terminal_response

    one, two = Response(text="one"), Response(text="two")
    assert terminal_response(None) is None
    assert terminal_response(_ev(Done, "s", response=one)) is one
    assert terminal_response(_ev(Cancelled, "s", partial=two)) is two
    assert terminal_response(_ev(Cancelled, "s")) is None
    assert terminal_response(_ev(Failed, "s", error=RuntimeError(), partial=two)) is two
    exc = RuntimeError("x")
    attach_partial(exc, None)
    assert not hasattr(exc, "partial")
    attach_partial(exc, one)
    assert exc.partial is one
    attach_partial(exc, two)  # an inner step's partial stays
    assert exc.partial is one


async def test_handler_timeout_bounds_each_handler_call(autojump_clock):
    """A handler slower than ``handler_timeout`` per call fails the step (under "fail") when the
    bound runs out, not when its call would have ended."""
    slow = Recorder(delay=10.0)  # 10 s per event: within the default bound, not within 1.5 s
    start = trio.current_time()
    with pytest.raises(HandlerError, match=r"within 1\.5 s"):
        await run_step(
            ScriptedProvider([call_script([("text", ["a", "b"])])]), [HandlerConsumer(slow, "slow")],
            on_handler_error="fail", handler_timeout=1.5,
        )
    assert trio.current_time() - start == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize("cancel_at", [0.5, 2.5])
async def test_a_full_channel_consumer_with_on_cancel_takes_the_terminal_over(autojump_clock, cancel_at):
    """Cancelled while the caller's channel is full (nobody reads it): the terminal goes to
    ``on_cancel`` at once, never into the channel and never waited for; once, and last."""
    send, receive = trio.open_memory_channel(1)
    taken = []
    provider = ScriptedProvider([call_script([("text", ["a", "b", "c"])], delay=1.0)])
    start = trio.current_time()
    with trio.move_on_after(cancel_at):
        await run_step(provider, [ChannelConsumer(send, on_cancel=taken.append)])
    assert trio.current_time() - start == pytest.approx(cancel_at)  # nothing waited on the full channel
    (terminal,) = taken
    assert isinstance(terminal, Cancelled) and terminal.step == "s"
    in_channel = [receive.receive_nowait()]
    assert isinstance(in_channel[0], StepStarted)  # the one event that fit
    with pytest.raises(trio.EndOfChannel):
        receive.receive_nowait()


async def test_the_steps_own_actors_get_the_terminal_before_it_waits_on_a_callers_channel(autojump_clock):
    """A caller's channel that is full when Done comes (its reader pauses 10 s) holds up the step's
    end, but not the Done of the handlers and of a coalesce channel's relay: theirs go first."""
    slow_send, slow_receive = trio.open_memory_channel(0)
    relay_send, relay_receive = trio.open_memory_channel(0)
    rec = Recorder()
    seen = {"slow": [], "relay": []}

    async def read(name, receive, pause):
        async for event in receive:
            seen[name].append((type(event).__name__, trio.current_time()))
            if pause and isinstance(event, Message):
                await trio.sleep(10)

    consumers = [
        ChannelConsumer(slow_send), HandlerConsumer(rec, "rec"), ChannelConsumer(relay_send, policy="coalesce"),
    ]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, "slow", slow_receive, True)
        nursery.start_soon(read, "relay", relay_receive, False)
        start = trio.current_time()
        await run_step(ScriptedProvider([call_script([("text", ["a", "b"])])]), consumers)
    assert trio.current_time() - start == pytest.approx(10, abs=0.5)  # the step waited for the slow reader
    assert isinstance(rec.events[-1], Done) and rec.times[-1] - start < 1
    assert seen["relay"][-1][0] == "Done" and seen["relay"][-1][1] - start < 1
    assert seen["slow"][-1][0] == "Done" and seen["slow"][-1][1] - start == pytest.approx(10, abs=0.5)



@pytest.mark.parametrize("where", ["consumer", "run"])
async def test_queue_high_water_counts_a_full_callers_channel_at_its_size(autojump_clock, where):
    """A caller's channel (a consumer's, or the run's stream) that fills counts at its own buffer
    size in ``queue_high_water``; an unbounded one never fills."""
    send, receive = trio.open_memory_channel(3)

    async def read_slowly():
        async for _ in receive:
            await trio.sleep(1)

    provider = ScriptedProvider([call_script([("text", ["a", "b", "c", "d", "e", "f"])])])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_slowly)
        if where == "consumer":
            response = await run_step(provider, [ChannelConsumer(send)])
        else:
            run = RunContext(run_id="r", origin=trio.current_time(), events=send)
            response = await run_step(provider, [], run=run)
            send.close()
    assert response.metrics.queue_high_water == 3
    unbounded_send, unbounded_receive = trio.open_memory_channel(float("inf"))
    response = await run_step(
        ScriptedProvider([call_script([("text", ["a", "b"])])]), [ChannelConsumer(unbounded_send)]
    )
    assert response.metrics.queue_high_water == 0 and response.text == "ab"
    assert len([e async for e in unbounded_receive]) > 3


async def test_cancelled_in_the_backoff_the_partial_holds_nothing_of_the_failed_call(autojump_clock):
    """A step cancelled while it waits to retry: its Cancelled carries the response so far, which
    has none of the abandoned call's text, deltas or usage (that usage counts as superseded)."""
    provider = ScriptedProvider([failing_call(["old ", "text"], OverloadedError("busy")), call_script([("text", ["new"])])])
    rec = Recorder()
    with trio.move_on_after(3.0):  # the failed call ends near 0.2 s; the retry waits 10 s
        await run_step(provider, [HandlerConsumer(rec, "r")], retry=Policy([10.0]))
    terminal = rec.events[-1]
    assert isinstance(terminal, Cancelled)
    partial = terminal.partial
    assert partial.text == "" and partial.metrics.delta_count == 0 and partial.messages == ()
    assert partial.usage == Usage() and partial.superseded_usage == Usage(input_tokens=10, output_tokens=1)
    check_invariants(rec.events)
