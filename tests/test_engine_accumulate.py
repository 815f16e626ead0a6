"""engine._accumulate, stateful: provider events folded into blocks, text and usage, against a plain model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sluiceway.engine import _accumulate
from sluiceway.engine._accumulate import Attempt, Block, merge_usage
from sluiceway.engine._events import Message, TextBlock, ThinkingBlock, ToolUseBlock, Usage
from sluiceway.engine._provider_events import (
    BlockStart,
    InputJsonChunk,
    MessageDeltaInfo,
    MessageStart,
    TextChunk,
    ThinkingChunk,
)

from sluiceway._errors import ProviderError

INDEX = st.integers(0, 3)
PIECE = st.text(alphabet="ab é\n{}\"", max_size=4)
COUNT = st.integers(0, 50)
USAGE = st.builds(Usage, COUNT, COUNT, COUNT, COUNT)
JSON_VALUE = st.dictionaries(
    st.text(alphabet="kx", min_size=1, max_size=2), st.one_of(st.integers(-3, 3), st.text(alphabet="a\"\\", max_size=3)),
    max_size=3,
)


class _ModelBlock:
    def __init__(self, kind: str, tool_use_id: str | None = None, name: str | None = None) -> None:
        self.kind = kind
        self.tool_use_id = tool_use_id
        self.name = name
        self.pieces: list[str] = []
        self.signature: str | None = None
        self.json_left: list[str] = []  # a tool block's input, the pieces not fed yet
        self.value: Any = None  # the tool input those pieces encode
        self.foreign = False  # a chunk of another kind landed in this block
        self.parsed: Any = None
        self.stopped = False


def _parse(raw: str) -> Any:
    return json.loads(raw) if raw.strip() else {}


class AttemptMachine(RuleBasedStateMachine):
    """One ``Attempt`` over several calls, each chunk checked against lists of pieces and plain sums."""

    def __init__(self) -> None:
        super().__init__()
        self.chunk_before = _accumulate.CHUNK
        _accumulate.CHUNK = 3  # compaction after a few pieces, not a thousand
        self.attempt = Attempt()
        self.in_call = False
        self.blocks: dict[int, _ModelBlock] = {}
        self.messages: list[Message] = []
        self.finished_usage = Usage()
        self.call_usage: Usage | None = None
        self.call_stop: str | None = None
        self.deltas = 0
        self.model: str | None = None
        self.seq = 0

    def teardown(self) -> None:
        _accumulate.CHUNK = self.chunk_before

    def _block(self, index: int, kind: str) -> _ModelBlock:
        if index not in self.blocks:
            self.blocks[index] = _ModelBlock(kind)
        return self.blocks[index]

    @precondition(lambda self: not self.in_call)
    @rule()
    def begin_call(self) -> None:
        self.attempt.begin_call()
        self.in_call = True
        self.blocks = {}
        self.call_usage = None
        self.call_stop = None

    @precondition(lambda self: self.in_call)
    @rule(model=st.none() | st.sampled_from(["m-1", "m-2"]), usage=USAGE)
    def message_start(self, model: str | None, usage: Usage) -> None:
        self.attempt.start_message(MessageStart(model=model, usage=usage))
        if model is not None:
            self.model = model
        self.call_usage = usage

    @precondition(lambda self: self.in_call)
    @rule(stop=st.none() | st.sampled_from(["end_turn", "tool_use"]), usage=st.none() | USAGE)
    def message_delta(self, stop: str | None, usage: Usage | None) -> None:
        self.attempt.update_message(MessageDeltaInfo(stop_reason=stop, usage=usage))
        if stop is not None:
            self.call_stop = stop
        if usage is not None:  # cumulative for the call: output replaces; the others replace when reported
            before = self.call_usage or Usage()
            self.call_usage = Usage(
                usage.input_tokens if usage.input_tokens else before.input_tokens,
                usage.output_tokens,
                usage.cache_creation_input_tokens if usage.cache_creation_input_tokens else before.cache_creation_input_tokens,
                usage.cache_read_input_tokens if usage.cache_read_input_tokens else before.cache_read_input_tokens,
            )

    @precondition(lambda self: self.in_call)
    @rule(index=INDEX, kind=st.sampled_from(["text", "thinking"]))
    def block_start(self, index: int, kind: str) -> None:
        self.attempt.start_block(BlockStart(index, kind))  # type: ignore[arg-type]
        self.blocks[index] = _ModelBlock(kind)

    @precondition(lambda self: self.in_call)
    @rule(index=INDEX, value=JSON_VALUE, cuts=st.lists(st.integers(0, 60), max_size=5))
    def tool_block_start(self, index: int, value: dict[str, Any], cuts: list[int]) -> None:
        self.attempt.start_block(BlockStart(index, "tool_use", tool_use_id=f"tu_{index}", name="Read"))
        block = self.blocks[index] = _ModelBlock("tool_use", f"tu_{index}", "Read")
        raw = json.dumps(value)
        points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
        block.json_left = [raw[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
        block.value = value

    @precondition(lambda self: self.in_call)
    @rule(index=INDEX, piece=PIECE)
    def text_chunk(self, index: int, piece: str) -> None:
        block = self.attempt.add_chunk(TextChunk(index, piece))
        assert block is not None
        self._block(index, "text").pieces.append(piece)
        self.blocks[index].foreign |= self.blocks[index].kind != "text"
        self.deltas += 1
        assert block.kind == self.blocks[index].kind

    @precondition(lambda self: self.in_call)
    @rule(index=INDEX, piece=PIECE, signature=st.none() | st.sampled_from(["sig-a", "sig-b"]))
    def thinking_chunk(self, index: int, piece: str, signature: str | None) -> None:
        added = self.attempt.add_chunk(ThinkingChunk(index, piece, signature))
        model = self._block(index, "thinking")
        model.foreign |= model.kind != "thinking" and bool(piece)
        if signature is not None:
            model.signature = signature
        if piece:
            model.pieces.append(piece)
            self.deltas += 1
            assert added is self.attempt.blocks[index]
        else:
            assert added is None  # a signature alone is no delta

    @precondition(lambda self: self.in_call)
    @rule(index=INDEX, data=st.data())
    def json_chunk(self, index: int, data: st.DataObject) -> None:
        model = self.blocks.get(index)
        if model is not None and model.json_left:
            piece = model.json_left.pop(0)  # the tool input, in order
        else:
            piece = data.draw(PIECE)  # a chunk at an index that has no tool block: it joins what is there
            if model is not None:
                model.foreign = True
        block = self.attempt.add_chunk(InputJsonChunk(index, piece))
        assert block is self.attempt.blocks[index]
        self._block(index, "tool_use").pieces.append(piece)
        self.deltas += 1
        assert block.tool_use_id == self.blocks[index].tool_use_id

    @precondition(lambda self: self.in_call)
    @rule(index=INDEX)
    def block_stop(self, index: int) -> None:
        model = self.blocks.get(index)
        if model is None or model.kind != "tool_use":
            assert self.attempt.stop_block(index, step="s") is None
            return
        raw = "".join(model.pieces)
        try:
            expected = _parse(raw)
        except ValueError:
            with pytest.raises(ProviderError, match="input is not JSON") as info:
                self.attempt.stop_block(index, step="s")
            assert info.value.step == "s"
            return
        block = self.attempt.stop_block(index, step="s")
        assert block is not None and block.parsed == expected
        if model.value is not None and not model.json_left and not model.foreign:
            assert block.parsed == model.value  # all of it came: the input parses to what was sent
        model.parsed, model.stopped = expected, True

    @precondition(lambda self: self.in_call)
    @rule()
    def message_stop(self) -> None:
        usage, content = self.attempt.end_call("requested")
        assert usage == (self.call_usage or Usage())
        expected: list[Any] = []
        for index in sorted(self.blocks):
            model = self.blocks[index]
            text = "".join(model.pieces)
            if model.kind == "text":
                expected.append(TextBlock(text))
            elif model.kind == "thinking":
                expected.append(ThinkingBlock(text, model.signature))
            else:
                if model.stopped:
                    parsed = model.parsed
                else:
                    try:
                        parsed = _parse(text)
                    except ValueError:
                        parsed = text  # never stopped, not JSON: kept as it came
                expected.append(ToolUseBlock(model.tool_use_id or "", model.name or "", parsed))
        assert content == tuple(expected)
        self.finished_usage = self.finished_usage + (self.call_usage or Usage())
        if self.model is None:
            self.model = "requested"
        assert self.attempt.stop_reason == self.call_stop
        self.seq += 1
        message = Message(run_id="r", step="s", attempt=1, seq=self.seq, at=0.0, role="assistant", content=content)
        self.attempt.messages.append(message)
        self.messages.append(message)
        self.blocks = {}
        self.call_usage = None
        self.in_call = False

    @invariant()
    def blocks_hold_their_pieces(self) -> None:
        assert set(self.attempt.blocks) == set(self.blocks)
        for index, model in self.blocks.items():
            block: Block = self.attempt.blocks[index]
            assert block.kind == model.kind
            assert block.text + "".join(block.parts) == "".join(model.pieces)  # nothing lost, in order
            assert len(block.parts) < _accumulate.CHUNK  # joined every CHUNK pieces
            if model.kind == "thinking":
                assert block.signature == model.signature

    @invariant()
    def text_is_the_concatenation(self) -> None:
        finished = "".join(b.text for m in self.messages for b in m.content if isinstance(b, TextBlock))
        open_text = "".join("".join(m.pieces) for m in self.blocks.values() if m.kind == "text")
        assert self.attempt.text() == finished + open_text

    @invariant()
    def usage_and_counts(self) -> None:
        expected = self.finished_usage if self.call_usage is None else self.finished_usage + self.call_usage
        assert self.attempt.total_usage() == expected
        assert self.attempt.usage == self.finished_usage
        assert self.attempt.delta_count == self.deltas
        assert self.attempt.model == self.model
        assert self.attempt.output_started() == (self.deltas > 0 or bool(self.messages))


AttemptMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestAttempt = AttemptMachine.TestCase


def test_merge_usage_replaces_cumulative_counts() -> None:
    start = Usage(input_tokens=10, output_tokens=1, cache_creation_input_tokens=3, cache_read_input_tokens=4)
    assert merge_usage(start, Usage(output_tokens=7)) == Usage(10, 7, 3, 4)
    assert merge_usage(start, Usage(input_tokens=12, output_tokens=9, cache_read_input_tokens=5)) == Usage(12, 9, 3, 5)


def test_a_fresh_attempt_has_no_stop_reason_model_or_output() -> None:
    attempt = Attempt()
    assert attempt.stop_reason is None and attempt.call_stop_reason is None
    assert attempt.model is None
    assert attempt.total_usage() == Usage() and attempt.text() == ""
    assert not attempt.output_started()


def test_a_tool_block_that_never_stopped_is_parsed_as_it_came() -> None:
    attempt = Attempt()
    attempt.begin_call()
    attempt.start_block(BlockStart(0, "tool_use", tool_use_id="tu_0", name="Read"))
    attempt.add_chunk(InputJsonChunk(0, '{"path": "a"}'))
    attempt.add_chunk(InputJsonChunk(1, '{"pa'))  # opened by its chunk: no id, no name; cut short
    attempt.add_chunk(InputJsonChunk(2, "  "))
    _, content = attempt.end_call("m")
    assert content == (
        ToolUseBlock("tu_0", "Read", {"path": "a"}),
        ToolUseBlock("", "", '{"pa'),
        ToolUseBlock("", "", {}),
    )


def test_a_tool_input_that_is_not_json_is_quoted_up_to_200_characters() -> None:
    attempt = Attempt()
    attempt.begin_call()
    attempt.start_block(BlockStart(0, "tool_use", tool_use_id="tu_9", name="Read"))
    attempt.add_chunk(InputJsonChunk(0, "x" * 300))
    with pytest.raises(ProviderError) as info:
        attempt.stop_block(0, step="s")
    assert f"tool 'Read' (tu_9): input is not JSON: {'x' * 200!r}" in str(info.value)
