"""Our SSE parser against the SDK's decoder, for streams cut at random byte boundaries."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
from anthropic._streaming import SSEDecoder
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.providers._sse import SSEParser

_names = st.sampled_from(
    ["message_start", "content_block_delta", "ping", "error", "message_stop", "", "ev ent"]
)
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
)
_json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
).map(lambda v: json.dumps(v, ensure_ascii=False))


@st.composite
def _event(draw, eol: str = "\n") -> str:
    """One SSE event as the wire shows it (lines end in *eol*, a blank line ends it)."""
    lines = []
    name = draw(_names)
    if draw(st.booleans()) or name:
        lines.append(f"event: {name}" if draw(st.booleans()) else f"event:{name}")
    for _ in range(draw(st.integers(0, 2))):
        lines.append("data: " + draw(_json_data))
    if draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), ":" + draw(_text))  # a comment
    if draw(st.integers(0, 9)) == 0:
        lines.append("id: " + draw(_text))
    if draw(st.integers(0, 9)) == 0:
        lines.append("retry: " + draw(st.sampled_from(["10", "x"])))
    if draw(st.integers(0, 14)) == 0:
        lines.append(draw(_text))  # an unknown field or stray text
    blank = eol * draw(st.sampled_from([1, 1, 1, 2]))
    return eol.join(lines) + eol + blank


@st.composite
def _cut_stream(draw) -> list[bytes]:
    # the API ends lines with \n; a proxy may use \r\n or \r, even from mid-stream on
    eols = draw(st.sampled_from([["\n"], ["\n"], ["\r\n"], ["\r"], ["\n", "\r\n"]]))
    events = [
        draw(_event(eols[min(i // 3, len(eols) - 1)])) for i in range(draw(st.integers(0, 8)))
    ]
    tail = draw(st.sampled_from(["", "", "event: partial\ndata: {}\n", "data: 1"]))
    raw = ("".join(events) + tail).encode("utf-8")
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    pieces, last = [], 0
    for cut in [*cuts, len(raw)]:
        pieces.append(raw[last:cut])
        last = cut
    return pieces


async def _sdk_events(pieces: list[bytes]) -> list[tuple[str | None, str]]:
    async def chunks():
        for piece in pieces:
            await trio.lowlevel.checkpoint()
            yield piece

    out = []
    gen = SSEDecoder().aiter_bytes(chunks())
    try:
        async for sse in gen:
            out.append((sse.event, sse.data))
    finally:
        await gen.aclose()
    return out


def _named(events):
    # the SDK's stream drops nameless events before anything sees them; so do we
    return [(name, data) for name, data in events if name is not None]


@settings(max_examples=200, deadline=None)
@given(_cut_stream())
def test_parser_matches_the_sdk_decoder(pieces):
    expected = trio.run(_sdk_events, pieces, clock=trio.testing.MockClock(autojump_threshold=0))
    parser = SSEParser()
    got = [event for piece in pieces for event in parser.feed(piece)]
    assert _named(got) == _named(expected)


def test_event_split_in_every_place():
    raw = b'event: content_block_delta\ndata: {"text":"h\xc3\xa9"}\n\nevent: ping\ndata: {}\n\n'
    for cut in range(len(raw) + 1):
        parser = SSEParser()
        got = parser.feed(raw[:cut]) + parser.feed(raw[cut:])
        assert got == [("content_block_delta", '{"text":"hé"}'), ("ping", "{}")], cut


def test_many_small_pieces_are_linear():
    # one event of 200 kB fed a byte at a time must not rescan what it already holds
    data = "x" * 200_000
    raw = f"event: big\ndata: {data}\n\n".encode()
    parser = SSEParser()
    got = []
    for i in range(0, len(raw), 7):
        got += parser.feed(raw[i : i + 7])
    assert got == [("big", data)]


def test_multiline_data_and_comments():
    parser = SSEParser()
    got = parser.feed(b": hello\nevent: e\ndata: a\ndata: b\nid: 3\n\n\n\nevent: ping\n\n")
    assert _named(got) == [("e", "a\nb"), ("ping", "")]


# -- every field, nameless events included, however the stream is cut ----------------------------
#
# The differential property test above compares named events only. These streams have no run of
# blank lines, so the SDK's decoder and ours must agree on every event, nameless ones too (an id
# or a retry field alone dispatches one), and the result must not depend on where the bytes were
# cut: whole, event by event (a paced stream's reads), byte by byte, at any one or two places.

# (name of the stream, its bytes)
_STREAMS = [
    (
        "the common shape, several data lines, an unknown field before data",
        b"event: a\ndata: 1\n\nevent: b\ndata: 2\ndata: 3\n\nevent: c\nfoo: x\ndata: 4\n\n"
        b"event: d\ndata: 5\nid: 9\n\n",
    ),
    (
        "fields that dispatch nothing: a comment, an id with NUL, an unknown field, a bad retry",
        b": only a comment\n\nevent: a\ndata: 1\n\nid: x\x00y\n\nfoo: 1\n\nretry: x\n\n"
        b"event:b\ndata:2\n\n",
    ),
    (
        "fields that dispatch a nameless event: an id, then a comment after it; a retry; data alone",
        b"retry: 10\n\ndata: 1\n\nid: 5\n\n: comment\n\nevent: a\ndata: 2\n\n",
    ),
    ("a name alone, with no data", b"event: a\n\nevent: b\nretry: 3\n\n"),
    (
        "line ends rewritten by a proxy from the second event on, then plain again",
        b"id: 5\nevent: a\ndata: 1\n\nevent: b\r\ndata: 2\r\n\r\n: c\r\n\r\nevent: c\rdata: 3\r\r"
        b"event: d\ndata: 4\n\n",
    ),
]


def _sdk_all(raw: bytes) -> list[tuple[str | None, str]]:
    events = trio.run(_sdk_events, [raw], clock=trio.testing.MockClock(autojump_threshold=0))
    return [(name or None, data) for name, data in events]  # ours: None for an empty name too


def _feed(pieces) -> list[tuple[str | None, str]]:
    parser = SSEParser()
    return [event for piece in pieces for event in parser.feed(piece)]


def _cuts(raw: bytes):
    """*raw* cut whole, event by event, byte by byte, and at every one and every two places."""
    yield [raw]
    yield [event + b"\n\n" for event in raw.split(b"\n\n")[:-1]]
    yield [raw[i : i + 1] for i in range(len(raw))]
    for i in range(len(raw) + 1):
        yield [raw[:i], raw[i:]]
        for j in range(i, len(raw) + 1, 3):
            yield [raw[:i], raw[i:j], raw[j:]]


@pytest.mark.parametrize(("what", "raw"), _STREAMS, ids=[what for what, _ in _STREAMS])
def test_every_event_matches_the_sdk_decoder_however_the_stream_is_cut(what, raw):
    expected = _sdk_all(raw)
    assert expected  # each stream dispatches something
    for pieces in _cuts(raw):
        assert _feed(pieces) == expected, pieces


def test_the_streams_above_mean_what_they_say():
    # the SDK's own reading of them, so that the comparison above checks something
    assert _sdk_all(_STREAMS[0][1]) == [("a", "1"), ("b", "2\n3"), ("c", "4"), ("d", "5")]
    assert _sdk_all(_STREAMS[1][1]) == [("a", "1"), ("b", "2")]
    assert _sdk_all(_STREAMS[2][1]) == [(None, ""), (None, "1"), (None, ""), (None, ""), ("a", "2")]
    assert _sdk_all(_STREAMS[3][1]) == [("a", ""), ("b", "")]
    assert _sdk_all(_STREAMS[4][1]) == [("a", "1"), ("b", "2"), (None, ""), ("c", "3"), ("d", "4")]


@pytest.mark.parametrize(
    "pieces",
    [
        [b"id: 1\ndata: x\n\n", b"\nevent: a\n", b"data: 2\n\n"],
        [b"event: z\ndata: 0\n\nid: 1\ndata: x\n\n", b"\nevent: a\n", b"data: 2\n\n"],
        [b"event: z\ndata: 0\n\nid: 1\ndata: x\n\n\n", b"event: a\ndata: 2\n\n"],
        [b"event: z\ndata: 0\n\nid: 1\ndata: x\n\n\nevent: a\ndata: 2\n\n"],
    ],
)
def test_a_run_of_blank_lines_ends_one_event_wherever_it_is_cut(pieces):
    """The extra blank lines dispatch nothing, also after an id (the SDK's decoder dispatches a
    nameless event for each, which its stream then drops)."""
    got = _feed(pieces)
    assert [e for e in got if e[0] != "z"] == [(None, "x"), ("a", "2")]
