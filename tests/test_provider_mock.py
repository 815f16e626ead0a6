"""The embedded mock provider: script, determinism, pacing in virtual time, errors, laziness."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.engine import (
    BlockStart,
    BlockStop,
    InputJsonChunk,
    MessageDeltaInfo,
    MessageStart,
    MessageStop,
    ModelRequest,
    Provider,
    TextChunk,
    ThinkingChunk,
)
from sluiceway.providers import MockProvider
from sluiceway.specs import MockSpec, MockToolCall, MockTurn

from sluiceway._errors import (
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    StreamInterruptedError,
)

DELTAS = (TextChunk, ThinkingChunk, InputJsonChunk)


def make_request(
    mock: Any = None, prompt: str = "Explain backpressure in two sentences.", **kw: Any
) -> ModelRequest:
    kw.setdefault("step", "draft")
    kw.setdefault("model", "claude-test")
    return ModelRequest(messages=({"role": "user", "content": prompt},), mock=mock, **kw)


async def collect(
    request: ModelRequest, provider: MockProvider | None = None
) -> list[tuple[float, Any]]:
    """Stream *request*; return (virtual seconds since open, event) pairs."""
    provider = provider or MockProvider()
    start = trio.current_time()
    out = []
    async with provider.stream(request) as events:
        async for event in events:
            out.append((trio.current_time() - start, event))
    return out


def text_of(events: list[tuple[float, Any]]) -> str:
    return "".join(e.text for _, e in events if isinstance(e, TextChunk))


def delta_times(events: list[tuple[float, Any]]) -> list[float]:
    return [t for t, e in events if isinstance(e, DELTAS)]


def test_is_a_provider() -> None:
    provider = MockProvider()
    assert isinstance(provider, Provider)
    assert provider.name == "mock"


async def test_scripted_response_event_order_and_usage(autojump_clock: Any) -> None:
    request = make_request(MockSpec(response="Hello, streaming  world!\n"))
    events = [e for _, e in await collect(request)]
    assert isinstance(events[0], MessageStart)
    assert events[0].model == "claude-test"
    prompt_chars = len("Explain backpressure in two sentences.")
    assert events[0].usage.input_tokens == prompt_chars // 4
    assert events[1] == BlockStart(0, "text")
    assert [e.text for e in events[2:-3]] == ["Hello, ", "streaming  ", "world!\n"]
    assert events[-3] == BlockStop(0)
    assert events[-2].stop_reason == "end_turn"
    assert events[-2].usage.output_tokens == len("Hello, streaming  world!\n") // 4
    assert events[-1] == MessageStop()


async def test_model_from_spec_then_request_then_default(autojump_clock: Any) -> None:
    spec_model = (await collect(make_request(MockSpec(response="x", model="claude-spec"))))[0][1]
    assert spec_model.model == "claude-spec"
    default = (await collect(make_request(None, model="")))[0][1]
    assert default.model == "claude-mock-1"
    custom = MockProvider(default_model="claude-other")
    assert (await collect(make_request(None, model=""), custom))[0][1].model == "claude-other"


async def test_derived_response_is_deterministic(autojump_clock: Any) -> None:
    prompt = "Summarize the design document of the sluiceway project, please, in detail."
    first = text_of(await collect(make_request(None, prompt)))
    second = text_of(await collect(make_request(MockSpec(pattern="slow"), prompt)))
    other = text_of(await collect(make_request(None, prompt + "!")))
    assert first == second
    assert first.startswith(f"Mock response to: {prompt[:60]}\n\n")
    assert len(first.split()) >= 8 + 3
    assert other != first


async def test_derived_response_uses_last_user_message_blocks(autojump_clock: Any) -> None:
    request = ModelRequest(
        step="s",
        model="m",
        messages=(
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "second\nquestion"}]},
        ),
    )
    assert text_of(await collect(request)).startswith("Mock response to: second question\n\n")
    tool_loop = attrs.evolve(
        request,
        turn=1,
        messages=(
            *request.messages,
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read"}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}],
            },
        ),
    )
    assert text_of(await collect(tool_loop)) == text_of(await collect(request))


@given(
    text=st.text(st.sampled_from("ab \n\té"), max_size=60),
    chunk_size=st.none() | st.integers(1, 7),
    pattern=st.sampled_from(["fast", "slow", "chunked", "realistic"]),
)
@settings(max_examples=100, deadline=None)
def test_deltas_concatenate_to_text(text: str, chunk_size: int | None, pattern: str) -> None:
    spec = MockSpec(response=text, chunk_size=chunk_size, pattern=pattern)  # type: ignore[arg-type]

    async def main() -> None:
        events = await collect(make_request(spec))
        chunks = [e.text for _, e in events if isinstance(e, TextChunk)]
        assert "".join(chunks) == text
        assert all(chunks)
        if chunk_size is not None:
            assert all(len(c) == chunk_size for c in chunks[:-1])
        elif pattern != "realistic":
            assert all(len(c.split()) <= 1 for c in chunks)
        else:
            assert all(len(c.split()) <= 4 for c in chunks)
        assert [type(e) for _, e in events][-2:] == [MessageDeltaInfo, MessageStop]
        assert events[-2][1].usage.output_tokens == max(1, len(text) // 4)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


WORDS20 = " ".join(f"w{i}" for i in range(20))


async def test_fast_pattern_takes_no_time(autojump_clock: Any) -> None:
    events = await collect(make_request(MockSpec(response=WORDS20)))
    assert delta_times(events) == [0.0] * 20
    assert events[-1][0] == 0.0


async def test_slow_pattern_timing(autojump_clock: Any) -> None:
    events = await collect(make_request(MockSpec(response=WORDS20, pattern="slow")))
    times = delta_times(events)
    assert len(times) == 20
    assert times[0] == pytest.approx(0.300)
    assert times[-1] == pytest.approx(0.300 + 19 * 0.150)
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == pytest.approx([0.150] * 19)
    assert events[0][0] == 0.0  # message_start is not delayed
    assert events[-1][0] == pytest.approx(times[-1])


async def test_chunked_pattern_timing(autojump_clock: Any) -> None:
    events = await collect(make_request(MockSpec(response=WORDS20, pattern="chunked")))
    times = delta_times(events)
    assert times == pytest.approx([0.2] * 5 + [0.45] * 5 + [0.7] * 5 + [0.95] * 5)


async def test_realistic_pattern_timing_is_jittered_and_deterministic(autojump_clock: Any) -> None:
    text = " ".join(f"word{i}" for i in range(200))
    first = await collect(make_request(MockSpec(response=text, pattern="realistic")))
    second = await collect(make_request(MockSpec(response=text, pattern="realistic")))
    assert [e for _, e in first] == [e for _, e in second]
    assert [t for t, _ in first] == pytest.approx([t for t, _ in second])
    times = delta_times(first)
    assert times[0] == pytest.approx(0.400)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(0.015 - 1e-9 <= g <= 0.040 + 1e-9 for g in gaps)
    assert len(set(round(g, 6) for g in gaps)) > 10
    sizes = [len(e.text.split()) for _, e in first if isinstance(e, TextChunk)]
    assert set(sizes) == {1, 2, 3, 4}
    assert sum(sizes) == 200
    assert text_of(first) == text


async def test_overrides_and_clock_scale(autojump_clock: Any) -> None:
    spec = MockSpec(response=WORDS20, pattern="slow", delay_ms=10, first_token_delay_ms=1000)
    times = delta_times(await collect(make_request(spec)))
    assert times[0] == pytest.approx(1.0)
    assert times[-1] == pytest.approx(1.0 + 19 * 0.010)
    half = delta_times(await collect(make_request(spec), MockProvider(clock_scale=0.5)))
    assert half == pytest.approx([t / 2 for t in times])
    chunked = MockSpec(response=WORDS20, pattern="chunked", delay_ms=100, first_token_delay_ms=0)
    assert delta_times(await collect(make_request(chunked))) == pytest.approx(
        [0.0] * 5 + [0.1] * 5 + [0.2] * 5 + [0.3] * 5
    )


TOOL_SPEC = MockSpec(
    response="The file says hello.",
    thinking="I should read it.",
    tool_calls=(
        MockToolCall("Read", {"file_path": "README.md", "limit": 40}),
        MockToolCall("Grep", {"pattern": "sluice"}),
    ),
)


def blocks(events: list[tuple[float, Any]]) -> list[tuple[Any, str]]:
    """(BlockStart, concatenated content) per block, in order."""
    out: list[tuple[Any, str]] = []
    for _, e in events:
        if isinstance(e, BlockStart):
            out.append((e, ""))
        elif isinstance(e, DELTAS):
            start, content = out[-1]
            assert e.index == start.index
            out[-1] = (start, content + getattr(e, "text", "") + getattr(e, "partial_json", ""))
    return out


async def test_single_turn_spec_with_tool_calls(autojump_clock: Any) -> None:
    turn0 = await collect(make_request(TOOL_SPEC, turn=0))
    got = blocks(turn0)
    assert [(b.index, b.kind, b.tool_use_id, b.name) for b, _ in got] == [
        (0, "thinking", None, None),
        (1, "text", None, None),
        (2, "tool_use", "toolu_mock_0_0", "Read"),
        (3, "tool_use", "toolu_mock_0_1", "Grep"),
    ]
    assert got[0][1] == "I should read it."
    assert got[1][1] == "Let me use the Grep and Read tools."
    assert json.loads(got[2][1]) == {"file_path": "README.md", "limit": 40}
    assert json.loads(got[3][1]) == {"pattern": "sluice"}
    pieces = [e for _, e in turn0 if isinstance(e, InputJsonChunk) and e.index == 2]
    assert len(pieces) >= 3
    assert turn0[-2][1].stop_reason == "tool_use"

    turn1 = await collect(make_request(TOOL_SPEC, turn=1))
    assert [b.kind for b, _ in blocks(turn1)] == ["text"]
    assert text_of(turn1) == "The file says hello."
    assert turn1[-2][1].stop_reason == "end_turn"


async def test_multi_turn_script(autojump_clock: Any) -> None:
    spec = MockSpec(
        turns=(
            MockTurn(tool_calls=(MockToolCall("Read", {"file_path": "a.txt"}),)),
            MockTurn(text="Now b.", tool_calls=(MockToolCall("Read", {"file_path": "b.txt"}),)),
            MockTurn(text="Done reading.", thinking="both read"),
        )
    )
    t0 = blocks(await collect(make_request(spec, turn=0)))
    assert [(b.kind, b.tool_use_id) for b, _ in t0] == [("tool_use", "toolu_mock_0_0")]
    assert t0[0][0].index == 0
    t1 = await collect(make_request(spec, turn=1))
    assert [(b.kind, b.tool_use_id) for b, _ in blocks(t1)] == [
        ("text", None),
        ("tool_use", "toolu_mock_1_0"),
    ]
    assert t1[-2][1].stop_reason == "tool_use"
    t2 = await collect(make_request(spec, turn=2))
    assert [(b.kind, c) for b, c in blocks(t2)] == [
        ("thinking", "both read"),
        ("text", "Done reading."),
    ]
    assert t2[-2][1].stop_reason == "end_turn"
    # Past the script: a derived final answer.
    t3 = await collect(make_request(spec, turn=3))
    assert text_of(t3).startswith("Mock response to: ")
    assert t3[-2][1].stop_reason == "end_turn"


async def test_mapping_script_is_accepted(autojump_clock: Any) -> None:
    spec = {"response": "from a dict", "tool_calls": [{"name": "Read", "input": {"p": 1}}]}
    assert [b.kind for b, _ in blocks(await collect(make_request(spec)))] == ["text", "tool_use"]
    assert text_of(await collect(make_request(spec, turn=1))) == "from a dict"


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("overloaded", OverloadedError),
        ("rate_limit", RateLimitedError),
        ("connection_lost", StreamInterruptedError),
        ("timeout", ProviderTimeoutError),
        ("server_error", ProviderError),
    ],
)
async def test_error_after_deltas(kind: str, cls: type, autojump_clock: Any) -> None:
    spec = MockSpec(response=WORDS20, pattern="slow", error=kind, error_after=3, retry_after=7.0)  # type: ignore[arg-type]
    seen: list[Any] = []
    with pytest.raises(ProviderError) as info:
        async with MockProvider().stream(make_request(spec, step="batch[2]")) as events:
            async for event in events:
                seen.append(event)
    assert type(info.value) is cls
    assert info.value.step == "batch[2]"
    assert "batch[2]" in str(info.value)
    assert [e.text for e in seen if isinstance(e, TextChunk)] == ["w0 ", "w1 ", "w2 "]
    assert not any(isinstance(e, (MessageDeltaInfo, MessageStop)) for e in seen)
    expected_retry = 7.0 if kind in ("overloaded", "rate_limit") else None
    assert info.value.retry_after == expected_retry
    assert trio.current_time() == pytest.approx(0.3 + 2 * 0.15)


async def test_error_before_output_raises_on_open(autojump_clock: Any) -> None:
    spec = MockSpec(response="hi", error="overloaded")
    entered = False
    with pytest.raises(OverloadedError) as info:
        async with MockProvider().stream(make_request(spec)):
            entered = True
    assert not entered
    assert info.value.step == "draft"


async def test_timeout_waits_the_request_deadline(autojump_clock: Any) -> None:
    spec = MockSpec(response=WORDS20, error="timeout")
    start = trio.current_time()
    with pytest.raises(ProviderTimeoutError):
        async with MockProvider().stream(make_request(spec, first_token_timeout=5.0)):
            pass  # pragma: no cover
    assert trio.current_time() - start == pytest.approx(5.0)
    spec = MockSpec(response=WORDS20, error="timeout", error_after=2)
    start = trio.current_time()
    with pytest.raises(ProviderTimeoutError):
        await collect(make_request(spec, idle_timeout=2.5))
    assert trio.current_time() - start == pytest.approx(2.5)


async def test_error_after_beyond_the_text_fails_before_stop(autojump_clock: Any) -> None:
    seen: list[Any] = []
    with pytest.raises(StreamInterruptedError):
        async with MockProvider().stream(
            make_request(MockSpec(response="a b", error="connection_lost", error_after=99))
        ) as events:
            async for event in events:
                seen.append(event)
    assert "".join(e.text for e in seen if isinstance(e, TextChunk)) == "a b"
    assert not any(isinstance(e, MessageStop) for e in seen)


async def test_error_attempts(autojump_clock: Any) -> None:
    spec = MockSpec(response="ok now", error="rate_limit", error_attempts=2, retry_after=1.5)
    for attempt in (1, 2):
        with pytest.raises(RateLimitedError) as info:
            await collect(make_request(spec, attempt=attempt))
        assert info.value.retry_after == 1.5
    assert text_of(await collect(make_request(spec, attempt=3))) == "ok now"
    every = MockSpec(response="never", error="overloaded")
    for attempt in (1, 5, 50):
        with pytest.raises(OverloadedError):
            await collect(make_request(every, attempt=attempt))


async def test_cancellation_mid_stream_is_prompt(autojump_clock: Any) -> None:
    spec = MockSpec(response=WORDS20, pattern="slow")
    seen: list[Any] = []
    with trio.move_on_after(1.0) as scope:
        async with MockProvider().stream(make_request(spec)) as events:
            async for event in events:
                seen.append(event)
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(1.0)
    # Deltas at 0.30, 0.45, ..., 0.90 arrived; nothing after the deadline.
    assert [e.text for e in seen if isinstance(e, TextChunk)] == [f"w{i} " for i in range(5)]


async def test_fast_stream_checkpoints_so_cancellation_works() -> None:
    spec = MockSpec(response="w " * 1_000_000)
    n = 0
    entered = False
    with trio.CancelScope() as scope:
        async with MockProvider().stream(make_request(spec)) as events:
            entered = True
            scope.cancel()  # takes effect at the stream's next checkpoint
            async for _ in events:
                n += 1
    assert entered
    assert scope.cancelled_caught
    assert 0 < n <= 64


async def test_cancelled_before_open_never_streams() -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        async with MockProvider().stream(make_request(MockSpec(response="x"))):
            raise AssertionError("opened under a cancelled scope")  # pragma: no cover
    assert scope.cancelled_caught


async def test_context_manager_exits_cleanly(autojump_clock: Any) -> None:
    provider = MockProvider()
    spec = MockSpec(response=WORDS20, pattern="slow")
    async with provider.stream(make_request(spec)) as events:
        first = await events.__anext__()
        assert isinstance(first, MessageStart)
    start = trio.current_time()
    with pytest.raises(trio.ClosedResourceError):
        await events.__anext__()
    assert trio.current_time() == start  # closing does not wait for the script
    # Breaking out and an exception inside both close at once.
    with pytest.raises(KeyError):
        async with provider.stream(make_request(spec)) as events:
            async for _ in events:
                raise KeyError("boom")
    await provider.aclose()
    await provider.aclose()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        async with provider.stream(make_request(spec)):
            pass  # pragma: no cover


async def test_open_checkpoints() -> None:
    with trio.testing.assert_checkpoints():
        async with MockProvider().stream(make_request(MockSpec(response="x"))):
            pass


async def test_million_delta_stream_is_lazy() -> None:
    text = "w " * 1_000_000
    tracemalloc.start()
    try:
        async with MockProvider().stream(make_request(MockSpec(response=text))) as events:
            got = [await events.__anext__() for _ in range(1_000)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e.text for e in got if isinstance(e, TextChunk)] == ["w "] * 998
    # Building a million events up front would take ~100 MB; lazily it is a few KB.
    assert peak < 2_000_000


async def test_hundred_thousand_fast_deltas_arrive_in_order() -> None:
    text = "".join(f"{i} " for i in range(100_000))
    count = 0
    expected = 0
    async with MockProvider().stream(make_request(MockSpec(response=text))) as events:
        async for event in events:
            if isinstance(event, TextChunk):
                assert event.text == f"{expected} "
                expected += 1
            count += 1
    assert expected == 100_000
    assert count == 100_000 + 5


def test_the_derived_answer_is_exactly_the_same_for_the_same_question():
    """The mock's derived answer is a pure function of the system prompt and the last question
    (tool-result turns skipped; whitespace folded in the quote). Pinned: a change here changes
    every example's and cassette's expected text, so it must be deliberate."""
    from sluiceway.engine._protocols import ModelRequest
    from sluiceway.providers._mock import derive_response

    def req(*messages, system=None):
        return ModelRequest(step="s", model="claude-mock-1", messages=messages, system=system)

    asked = req({"role": "user", "content": "What is  the\nanswer?"}, system="Be brief.")
    assert derive_response(asked) == (
        "Mock response to: What is the answer?\n\n"
        "Each buffers it design design code buffers nurseries in the carries it a or."
    )
    after_tools = req(
        {"role": "user", "content": [{"type": "text", "text": "Q"}]},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]},
    )
    assert derive_response(after_tools) == (
        "Mock response to: Q\n\nAnd is carries in the or so carries order every."
    )
    assert derive_response(req()) == (
        "Mock response. Backpressure design backpressure keeps or carries a in run the or usage code every."
    )
    # the system prompt is part of the seed; no system and an empty one are the same
    assert derive_response(req({"role": "user", "content": "Q"}, system="")) == derive_response(
        req({"role": "user", "content": "Q"})
    )
    assert derive_response(req({"role": "user", "content": "Q"}, system="x")) != derive_response(
        req({"role": "user", "content": "Q"})
    )


# --- exact content: ids, usage, derived quotes, tool preambles, pieces, errors ---------------


def _events(collected: list[tuple[float, Any]]) -> list[Any]:
    return [e for _, e in collected]


async def test_message_start_names_the_call_and_counts_the_prompt(autojump_clock: Any) -> None:
    import re

    tool = {"name": "Read", "input_schema": {"type": "object"}}
    messages = (
        {"role": "user", "content": "a" * 40},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {"b": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "c" * 20}]},
    )
    request = ModelRequest(step="s", model="m", messages=messages, system="sys", tools=(tool,), turn=3)
    start = _events(await collect(request))[0]
    # every character of the prompt counts: system, each message's text, each tool's JSON
    chars = 3 + 40 + len('{"b": 1}') + 20 + len(json.dumps(tool, sort_keys=True))
    assert start.usage.input_tokens == chars // 4 and start.usage.output_tokens == 1
    assert re.fullmatch(r"msg_mock_[0-9a-f]{12}_3", start.message_id), start.message_id
    again = _events(await collect(request))[0]
    other_step = _events(await collect(attrs.evolve(request, step="t")))[0]
    assert again.message_id == start.message_id != other_step.message_id
    empty = ModelRequest(step="s", model="m", messages=(), mock=MockSpec(response="x"))
    assert _events(await collect(empty))[0].usage == MessageStart("m", _usage(1, 1)).usage


def _usage(input_tokens: int, output_tokens: int) -> Any:
    from sluiceway.engine._events import Usage

    return Usage(input_tokens=input_tokens, output_tokens=output_tokens)


def test_derived_quote_joins_a_questions_parts_with_their_tool_inputs_sorted() -> None:
    from sluiceway.providers._mock import derive_response

    content = [
        {"type": "text", "text": "Q1"},
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "R"}]},
        {"type": "other", "input": {"b": 1, "a": 2}},
    ]
    text = derive_response(ModelRequest(step="s", model="m", messages=({"role": "user", "content": content},)))
    assert text.startswith('Mock response to: Q1 R {"a": 2, "b": 1}\n\n'), text


def test_a_user_message_without_content_is_an_empty_question() -> None:
    from sluiceway.providers._mock import derive_response

    messages = ({"role": "user", "content": "earlier"}, {"role": "user"})
    text = derive_response(ModelRequest(step="s", model="m", messages=messages))
    assert text.startswith("Mock response. ") and "earlier" not in text, text


async def test_the_tool_preamble_names_each_tool_once(autojump_clock: Any) -> None:
    one = MockSpec(response="done", tool_calls=(MockToolCall(name="Read", input={"b": 1, "a": 2}),))
    events = await collect(make_request(one))
    assert text_of(events) == "Let me use the Read tool."
    pieces = [e.partial_json for e in _events(events) if isinstance(e, InputJsonChunk)]
    # sorted keys, in pieces of ceil(len / 4) characters
    assert pieces == ['{"a"', ": 2,", ' "b"', ": 1}"]
    two = MockSpec(
        tool_calls=(
            MockToolCall(name="Read", input={}),
            MockToolCall(name="Grep", input={}),
            MockToolCall(name="Read", input={}),
        )
    )
    events = await collect(make_request(two))
    assert text_of(events) == "Let me use the Grep and Read tools."
    # "{}" is two pieces of one character
    assert [e.partial_json for e in _events(events) if isinstance(e, InputJsonChunk)] == ["{", "}"] * 3


async def test_tool_input_pieces_are_a_quarter_of_the_json(autojump_clock: Any) -> None:
    spec = MockSpec(tool_calls=(MockToolCall(name="Read", input={"a": 2, "bb": 1}),))
    pieces = [e.partial_json for e in _events(await collect(make_request(spec))) if isinstance(e, InputJsonChunk)]
    assert "".join(pieces) == '{"a": 2, "bb": 1}'
    assert pieces == ['{"a":', ' 2, "', 'bb": ', "1}"]  # 17 characters: pieces of 5


async def test_thinking_streams_as_thinking_on_every_turn(autojump_clock: Any) -> None:
    spec = MockSpec(response="answer", thinking="let me think")
    for turn in (0, 1):
        events = _events(await collect(make_request(spec, turn=turn)))
        thinking = [e for e in events if isinstance(e, ThinkingChunk)]
        assert "".join(e.text for e in thinking) == "let me think"
        assert all(e.index == 0 for e in thinking)
        assert [e.index for e in events if isinstance(e, TextChunk)][0] == 1


async def test_a_spec_object_without_some_keys_is_read_as_absent(autojump_clock: Any) -> None:
    class Spec:
        response = "hello there"

    assert text_of(await collect(make_request(Spec()))) == "hello there"


async def test_closed_provider_and_stream_errors_say_which(autojump_clock: Any) -> None:
    provider = MockProvider()
    async with provider.stream(make_request(MockSpec(response="a b"))) as events:
        pass
    with pytest.raises(trio.ClosedResourceError) as info:
        await events.__anext__()
    assert str(info.value) == "the mock stream is closed"
    outside = provider.stream(make_request(MockSpec(response="a b")))
    with pytest.raises(AssertionError, match=r"^use the stream inside `async with provider\.stream\(\.\.\.\)`"):
        await outside.__anext__()
    await provider.aclose()
    with pytest.raises(trio.ClosedResourceError) as info:
        async with provider.stream(make_request()):
            raise AssertionError("entered")
    assert str(info.value) == "the mock provider is closed"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"error": "meltdown"}, "unknown mock error 'meltdown'"),
        ({"pattern": "zigzag"}, "unknown mock pattern 'zigzag'"),
        ({"chunk_size": 0}, "mock chunk_size must be at least 1, got 0"),
    ],
)
async def test_bad_mock_scripts_are_named(autojump_clock: Any, spec: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        await collect(make_request(spec))
    assert str(info.value) == message


async def test_error_turn_fails_only_that_turn(autojump_clock: Any) -> None:
    spec = MockSpec(
        turns=(MockTurn(text="one"), MockTurn(text="two"), MockTurn(text="three")),
        error="overloaded",
        error_turn=1,
        retry_after=3.0,
    )
    assert text_of(await collect(make_request(spec, turn=0))) == "one"
    with pytest.raises(OverloadedError) as info:
        await collect(make_request(spec, turn=1))
    assert info.value.message == "overloaded_error: Overloaded (injected by the mock)"
    assert (info.value.step, info.value.retry_after) == ("draft", 3.0)
    assert text_of(await collect(make_request(spec, turn=2))) == "three"


async def test_timeout_waits_the_deadline_times_the_clock_scale(autojump_clock: Any) -> None:
    spec = MockSpec(response="a b", error="timeout")
    start = trio.current_time()
    with pytest.raises(ProviderTimeoutError):
        await collect(make_request(spec, first_token_timeout=1.5), MockProvider(clock_scale=2.0))
    assert trio.current_time() - start == pytest.approx(3.0)


async def _stream_watched(spec: MockSpec) -> tuple[int, list[int]]:
    """The stream's event count, and how many events it had sent each time another task ran."""
    seen: list[Any] = []
    observed: list[int] = []
    done = trio.Event()

    async def consume() -> None:
        async with MockProvider().stream(make_request(spec)) as events:
            async for e in events:
                seen.append(e)
        done.set()

    async def watch() -> None:
        while not done.is_set():
            observed.append(len(seen))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        nursery.start_soon(consume)
    return len(seen), observed


async def test_fast_stream_yields_to_other_tasks_every_64_events() -> None:
    # one short first-token sleep, then 1000 words with no sleep
    spec = MockSpec(response="w " * 1000, first_token_delay_ms=1)
    total, observed = await _stream_watched(spec)
    assert total == 2 + 1000 + 3  # MessageStart, BlockStart, the words, BlockStop, delta, stop
    # the consumer stops at open, in the first-token sleep (after 2 events), then just before
    # the 64th event after that sleep, and every 64 events on, and at the end
    allowed = {0, 2, total} | set(range(2 + 63, total, 64))
    progress = sorted(set(observed))
    assert set(progress) <= allowed, progress
    assert len(progress) >= 6, progress


async def test_fast_stream_without_sleeps_yields_just_before_every_64th_event() -> None:
    spec = MockSpec(response="w " * 300)
    total, observed = await _stream_watched(spec)
    assert total == 2 + 300 + 3
    progress = sorted(set(observed))
    assert set(progress) <= {0, total} | set(range(63, total, 64)), progress
    assert len(progress) >= 3, progress


async def test_the_message_id_is_pinned_for_the_same_call() -> None:
    """The id is a pure function of the step, the turn and the call's content. Pinned: a change
    changes the ids in every result and cassette made in mock mode, so it must be deliberate."""
    request = ModelRequest(
        step="draft",
        model="m",
        messages=({"role": "user", "content": "Explain backpressure."},),
        mock={"response": "The answer."},
    )
    async with MockProvider(clock_scale=0).stream(request) as events:
        first = [e async for e in events][0]
    assert first.message_id == "msg_mock_9eec85e866c3_0"


async def test_a_timeout_whose_deadline_is_already_past_fails_at_once(autojump_clock: Any) -> None:
    spec = MockSpec(response="a b", error="timeout")
    start = trio.current_time()
    with pytest.raises(ProviderTimeoutError) as info:
        await collect(make_request(spec, first_token_timeout=-1.0))
    assert trio.current_time() == start
    assert info.value.message == "timed out waiting for the model (injected by the mock)"
