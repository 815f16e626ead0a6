"""The SSE -> provider events converter against the anthropic SDK's own message accumulation.

A state machine writes a Messages API stream one event at a time (text, thinking and
tool_use blocks, a server tool's block we drop, pings, unknown events, an error event) and
hands it to ``SSEParser`` + ``SSEEventConverter`` cut at random byte boundaries. The SDK's
``accumulate_event`` builds its message from the same events; after every delivery, what the
provider events add up to must be what the SDK accumulated.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sluiceway.engine._events import Usage
from sluiceway.engine._provider_events import (
    BlockStart,
    BlockStop,
    InputJsonChunk,
    MessageDeltaInfo,
    MessageStart,
    MessageStop,
    ProviderEvent,
    TextChunk,
    ThinkingChunk,
)
from sluiceway.providers._sse import SSEParser
from sluiceway.providers._sse_events import SSEEventConverter

from sluiceway._errors import ProviderError

_KNOWN = {"message_start", "content_block_start", "content_block_delta", "content_block_stop",
          "message_delta", "message_stop", "error"}
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
_tool_input = st.dictionaries(
    st.text(alphabet="abcxyz", min_size=1, max_size=4),
    st.none() | st.booleans() | st.integers() | _text | st.lists(st.integers(), max_size=3),
    max_size=3,
)


def _add_up(events: list[ProviderEvent]) -> dict[str, Any]:
    """What the provider events say about the message: a small reference model."""
    message: dict[str, Any] = {"blocks": {}, "stop_reason": None, "output_tokens": None, "stops": 0}
    for event in events:
        if isinstance(event, MessageStart):
            message.update(model=event.model, id=event.message_id, usage=event.usage)
        elif isinstance(event, BlockStart):
            assert event.index not in message["blocks"]  # one start per block
            message["blocks"][event.index] = {
                "kind": event.kind, "text": "", "signature": None, "json": "",
                "id": event.tool_use_id, "name": event.name, "open": True,
            }
        elif isinstance(event, BlockStop):
            assert message["blocks"][event.index]["open"]
            message["blocks"][event.index]["open"] = False
        elif isinstance(event, (TextChunk, ThinkingChunk, InputJsonChunk)):
            block = message["blocks"][event.index]
            assert block["open"]  # deltas only inside their block
            if isinstance(event, InputJsonChunk):
                block["json"] += event.partial_json
            else:
                block["text"] += event.text
            if isinstance(event, ThinkingChunk) and event.signature is not None:
                block["signature"] = event.signature
        elif isinstance(event, MessageDeltaInfo):
            message["stop_reason"] = event.stop_reason
            message["output_tokens"] = event.usage.output_tokens if event.usage else None
        elif isinstance(event, MessageStop):
            message["stops"] += 1
    return message


class ConverterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.parser = SSEParser()
        self.converter = SSEEventConverter("draft", request_id="req_1")
        self.events: list[ProviderEvent] = []
        self.wire = b""  # written, not yet delivered
        self.snapshot: Any = None  # the SDK's message
        self.json_bufs: dict[int, bytes] = {}
        self.kinds: list[str] = []  # each block's type, by index
        self.open: int | None = None
        self.json_left = ""  # the open tool block's input still to send
        self.ended = False
        self.stopped = False  # message_stop went to the SDK
        self.error: dict[str, Any] | None = None
        self._write({
            "type": "message_start",
            "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 7, "output_tokens": 1, "cache_read_input_tokens": 3},
            },
        })

    def _write(self, event: dict[str, Any], *, to_sdk: bool = True) -> None:
        self.wire += f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
        if to_sdk:
            self.snapshot = accumulate_event(event=event, current_snapshot=self.snapshot, json_bufs=self.json_bufs)

    # -- the stream -------------------------------------------------------------

    @precondition(lambda self: self.open is None and not self.ended)
    @rule(kind=st.sampled_from(["text", "thinking", "tool_use", "server_tool_use"]), tool_input=_tool_input)
    def start_block(self, kind: str, tool_input: dict[str, Any]) -> None:
        index = self.open = len(self.kinds)
        self.kinds.append(kind)
        block: dict[str, Any] = {"type": kind}
        if kind == "text":
            block["text"] = ""
        elif kind == "thinking":
            block.update(thinking="", signature="")
        else:
            block.update(id=f"toolu_{index}", name=f"tool{index}", input={})
            self.json_left = json.dumps(tool_input, ensure_ascii=False)
        self._write({"type": "content_block_start", "index": index, "content_block": block})

    @precondition(lambda self: self.open is not None and self.kinds[self.open] == "text")
    @rule(texts=st.lists(_text, min_size=1, max_size=4))
    def text_deltas(self, texts: list[str]) -> None:
        for text in texts:
            delta = {"type": "text_delta", "text": text}
            self._write({"type": "content_block_delta", "index": self.open, "delta": delta})

    @precondition(lambda self: self.open is not None and self.kinds[self.open] == "thinking")
    @rule(
        texts=st.lists(_text, max_size=4),
        signature=st.none() | st.text(alphabet="abcdef0123456789", min_size=1, max_size=12),
    )
    def thinking_deltas(self, texts: list[str], signature: str | None) -> None:
        for text in texts:
            delta = {"type": "thinking_delta", "thinking": text}
            self._write({"type": "content_block_delta", "index": self.open, "delta": delta})
        if signature is not None:
            delta = {"type": "signature_delta", "signature": signature}
            self._write({"type": "content_block_delta", "index": self.open, "delta": delta})

    @precondition(lambda self: self.open is not None and self.json_left)
    @rule(size=st.integers(min_value=0, max_value=12))
    def json_delta(self, size: int) -> None:
        piece, self.json_left = self.json_left[:size], self.json_left[size:]
        delta = {"type": "input_json_delta", "partial_json": piece}
        self._write({"type": "content_block_delta", "index": self.open, "delta": delta})

    @precondition(lambda self: self.open is not None)
    @rule()
    def stop_block(self) -> None:
        if self.json_left:
            self.json_delta(len(self.json_left))
        self._write({"type": "content_block_stop", "index": self.open})
        self.open = None

    @rule()
    def ping(self) -> None:
        self._write({"type": "ping"}, to_sdk=False)

    @rule()
    def unknown_event(self) -> None:
        self._write({"type": "future_event", "x": 1}, to_sdk=False)

    @precondition(lambda self: self.open is None and not self.ended)
    @rule(stop_reason=st.sampled_from(["end_turn", "tool_use", "max_tokens"]), tokens=st.integers(0, 10**6))
    def finish(self, stop_reason: str, tokens: int) -> None:
        self._write({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": tokens},
        })
        self._write({"type": "message_stop"})
        self.ended = self.stopped = True

    @precondition(lambda self: not self.ended)
    @rule(kind=st.sampled_from(["overloaded_error", "api_error"]))
    def error_event(self, kind: str) -> None:
        self.error = {"type": "error", "error": {"type": kind, "message": "busy"}}
        self._write(self.error, to_sdk=False)
        # what follows an error is not converted: the SDK would have raised already
        self._write({"type": "message_stop"}, to_sdk=False)
        self.ended, self.open, self.json_left = True, None, ""  # the stream is over

    # -- delivery ---------------------------------------------------------------

    @rule(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6))
    def deliver(self, cuts: list[int]) -> None:
        wire, self.wire = self.wire, b""
        points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
        for a, b in zip(points, points[1:], strict=False):
            if b > a:
                pairs = self.parser.feed(wire[a:b])
                after_error, before = self.converter.error is not None, len(self.events)
                progress = self.converter.convert(pairs, self.events)
                if after_error:  # nothing is converted after an error event
                    assert progress is False and len(self.events) == before
                else:  # progress (for the deadlines): a Messages API event came
                    assert progress == any(name in _KNOWN and data for name, data in pairs)
        self.compare()

    def compare(self) -> None:
        """What our events add up to is what the SDK accumulated from the same stream."""
        ours = _add_up(self.events)
        sdk = self.snapshot
        assert ours["model"] == sdk.model and ours["id"] == sdk.id
        assert ours["usage"] == Usage(7, 1, 0, 3)
        shown = {i: kind for i, kind in enumerate(self.kinds) if kind != "server_tool_use"}
        delivered = ours["blocks"]
        assert set(delivered) <= set(shown)  # server tools' blocks are dropped
        for index, block in delivered.items():
            content = sdk.content[index]
            assert block["kind"] == content.type
            if content.type == "text":
                assert block["text"] == content.text
            elif content.type == "thinking":
                assert block["text"] == content.thinking
                assert (block["signature"] or "") == content.signature
            else:
                assert (block["id"], block["name"]) == (content.id, content.name)
                assert block["json"] == self.json_bufs.get(index, b"").decode()
                if not block["open"]:
                    assert json.loads(block["json"] or "{}") == content.input
        if self.stopped and not self.wire:
            assert ours["stop_reason"] == sdk.stop_reason
            assert ours["output_tokens"] == sdk.usage.output_tokens
        assert self.converter.started == any(
            isinstance(e, (TextChunk, ThinkingChunk, InputJsonChunk)) for e in self.events
        )

    @invariant()
    def one_stop_and_nothing_after_an_error(self) -> None:
        stops = _add_up(self.events)["stops"]
        assert stops <= 1 and self.converter.done == (stops == 1)
        if self.converter.error is not None:
            assert self.converter.error == self.error and stops == 0

    def teardown(self) -> None:
        self.deliver([])
        if self.error is None and self.stopped:
            assert isinstance(self.events[-1], MessageStop) and self.converter.done
        if self.error is not None:
            assert self.converter.error == self.error and not self.converter.done


ConverterMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestConverter = ConverterMachine.TestCase


def test_a_malformed_event_is_a_provider_error_naming_the_step() -> None:
    converter = SSEEventConverter("draft")
    with pytest.raises(ProviderError, match="malformed event") as info:
        converter.convert([("content_block_delta", "{not json")], [])
    assert info.value.step == "draft"


# -- one fixed stream, event by event: the exact provider events, by either path ------------------

_STREAM: list[tuple[str, dict[str, Any]]] = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "model": "claude-x", "content": [],
        "usage": {"input_tokens": 7, "output_tokens": 1, "cache_creation_input_tokens": 2,
                  "cache_read_input_tokens": 3},
    }}),
    ("ping", {"type": "ping"}),
    # no "index": the first block's is 0
    ("content_block_start", {"type": "content_block_start", "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hel"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
    ("content_block_stop", {"type": "content_block_stop"}),
    ("content_block_start", {"type": "content_block_start", "index": 1,
                             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "signature_delta", "signature": "sig"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("content_block_start", {"type": "content_block_start", "index": 2,
                             "content_block": {"type": "redacted_thinking", "data": "xyz"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    # a server tool's block, its delta and stop: run at the API, not passed on
    ("content_block_start", {"type": "content_block_start", "index": 3,
                             "content_block": {"type": "server_tool_use", "id": "srv_1", "name": "web_search"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 3,
                             "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 3}),
    ("content_block_start", {"type": "content_block_start", "index": 4,
                             "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 4,
                             "delta": {"type": "input_json_delta", "partial_json": '{"path":'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 4,
                             "delta": {"type": "input_json_delta", "partial_json": ' "a"}'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 4,
                             "delta": {"type": "citations_delta", "citation": {}}}),  # not ours: dropped
    ("content_block_stop", {"type": "content_block_stop", "index": 4}),
    ("future_event", {"type": "future_event"}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None,
                                                          "container": "c1"},
                       "usage": {"output_tokens": 42}}),
    ("message_stop", {"type": "message_stop"}),
]

_EXPECTED: list[ProviderEvent] = [
    MessageStart(model="claude-x", usage=Usage(7, 1, 2, 3), message_id="msg_1", request_id="req_1"),
    BlockStart(0, "text"),
    TextChunk(0, "Hel"),
    TextChunk(0, "lo"),
    BlockStop(0),
    BlockStart(1, "thinking"),
    ThinkingChunk(1, "hmm"),
    ThinkingChunk(1, "", signature="sig"),
    BlockStop(1),
    BlockStart(2, "thinking"),
    BlockStop(2),
    BlockStart(4, "tool_use", tool_use_id="toolu_1", name="Read"),
    InputJsonChunk(4, '{"path":'),
    InputJsonChunk(4, ' "a"}'),
    BlockStop(4),
    MessageDeltaInfo(stop_reason="tool_use", usage=Usage(output_tokens=42), extra={"container": "c1"}),
    MessageStop(),
]


def _pairs(stream=_STREAM) -> list[tuple[str | None, str]]:
    return [(name, json.dumps(payload)) for name, payload in stream]


def test_a_stream_event_by_event_gives_exactly_these_events() -> None:
    converter = SSEEventConverter("draft", request_id="req_1")
    out: list[ProviderEvent] = []
    progress = []
    for pair in _pairs():
        progress.append(converter.convert([pair], out))
        assert converter.started == (len(out) > 2)  # from the first text delta on
    assert out == _EXPECTED
    assert progress == [name not in ("ping", "future_event") for name, _ in _STREAM]
    assert converter.done and converter.error is None


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 12, len(_STREAM)])
def test_a_stream_in_batches_gives_the_same_events(cut) -> None:
    converter = SSEEventConverter("draft", request_id="req_1")
    out: list[ProviderEvent] = []
    pairs = _pairs()
    started = []
    for start in range(0, len(pairs), cut):
        converter.convert(pairs[start : start + cut], out)
        started.append(converter.started)
    assert out == _EXPECTED and converter.done
    # the first token came with the batch that held the first text delta (the fourth pair)
    assert started == [start + cut > 3 for start in range(0, len(pairs), cut)]


def test_the_parser_and_the_converter_on_the_wire() -> None:
    wire = "".join(f"event: {name}\ndata: {data}\n\n" for name, data in _pairs()).encode()
    converter = SSEEventConverter("draft", request_id="req_1")
    out: list[ProviderEvent] = []
    assert converter.convert(SSEParser().feed(wire), out) is True
    assert out == _EXPECTED


def test_usage_and_payloads_with_missing_or_null_fields() -> None:
    converter = SSEEventConverter()
    out: list[ProviderEvent] = []
    converter.convert([("message_start", '{"message": {"usage": {"input_tokens": null}}}')], out)
    converter.convert([("message_start", "{}")], out)
    converter.convert([("message_delta", '{"delta": {"stop_reason": null}}')], out)
    assert out == [MessageStart(usage=Usage()), MessageStart(usage=Usage()), MessageDeltaInfo(usage=Usage())]
    assert converter.convert([("message_stop", "")], out) is False  # no data: not an event
    assert converter.convert([("ping", "{}"), (None, "{}")], out) is False and len(out) == 3


@pytest.mark.parametrize("batch", [False, True])
def test_nothing_after_an_error_event_is_converted(batch) -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    pairs = [*_pairs(_STREAM[:4]), ("error", json.dumps(error)), *_pairs(_STREAM[4:])]
    converter = SSEEventConverter("draft", request_id="req_1")
    out: list[ProviderEvent] = []
    if batch:
        assert converter.convert(pairs, out) is True
    else:
        assert [converter.convert([pair], out) for pair in pairs[:5]] == [True, False, True, True, True]
        assert [converter.convert([pair], out) for pair in pairs[5:]] == [False] * (len(pairs) - 5)
    assert out == _EXPECTED[:3] and converter.error == error and not converter.done


def test_json_with_spaces_around_it_is_read_alone_and_in_a_batch() -> None:
    converter = SSEEventConverter()
    out: list[ProviderEvent] = []
    converter.convert([("message_start", ' {"message": {"id": "m"}} ')], out)
    converter.convert([("message_start", '{"message": {"id": "a"}}'), ("message_stop", " {} ")], out)
    assert out == [MessageStart(message_id="m"), MessageStart(message_id="a"), MessageStop()]


@pytest.mark.parametrize(
    "datas",
    [
        ["{not json", "{}"],
        ["{}", "{not json"],
        ["1,2", "{}"],  # one event's data that reads as two array items
        ["{}", "{} ] [{}"],  # the array closes early with as many items as events
        ["[{}", "{}"],  # read from the second character, the batch looks whole
    ],
)
def test_a_malformed_event_in_a_batch_is_a_provider_error_naming_it(datas) -> None:
    converter = SSEEventConverter("draft")
    bad = next(d for d in datas if d != "{}")
    with pytest.raises(ProviderError, match="malformed event") as info:
        converter.convert([("message_stop", data) for data in datas], [])
    assert info.value.step == "draft" and repr(bad[:80]) in str(info.value)


def test_a_delta_without_its_field_is_an_empty_piece_and_a_stopped_block_takes_no_more() -> None:
    def delta(index, **fields):
        return ("content_block_delta", json.dumps({"index": index, "delta": fields}))

    def start(index, kind):
        return ("content_block_start", json.dumps({"index": index, "content_block": {"type": kind}}))

    def stop(index):
        return ("content_block_stop", json.dumps({"index": index}))

    pairs = [
        start(0, "text"), delta(0, type="text_delta"),
        start(1, "thinking"), delta(1, type="thinking_delta"), delta(1, type="signature_delta"),
        start(2, "tool_use"), delta(2, type="input_json_delta"),
        stop(0), delta(0, type="text_delta", text="late"), stop(0),  # after its stop: dropped
    ]
    for batch in (False, True):
        converter = SSEEventConverter()
        out: list[ProviderEvent] = []
        if batch:
            converter.convert(pairs, out)
        else:
            for pair in pairs:
                converter.convert([pair], out)
        assert out == [
            BlockStart(0, "text"), TextChunk(0, ""),
            BlockStart(1, "thinking"), ThinkingChunk(1, ""), ThinkingChunk(1, "", signature=""),
            BlockStart(2, "tool_use"), InputJsonChunk(2, ""),
            BlockStop(0),
        ]


def test_a_malformed_event_shows_its_first_80_characters() -> None:
    data = "{" + "x" * 100
    with pytest.raises(ProviderError) as info:
        SSEEventConverter("draft").convert([("message_stop", data)], [])
    assert str(info.value) == f"step 'draft': malformed event from the API: {data[:80]!r}"
