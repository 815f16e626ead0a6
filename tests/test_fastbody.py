"""The fast path's chunked-body reader (``FastBody``) against h11, on random splits.

These drive ``FastBody`` with a real h11 state and a socket stream of our own; that the fast
path engages under the real HTTP stack is ``tests/test_fastbody_engages.py``'s to check.
"""

from __future__ import annotations

from typing import Any

import h11
import httpcore2
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.providers._fastbody import FastBody


class _Pieces:
    """A socket stream that returns the given pieces, then EOF (b"")."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)
        self.reads = 0

    async def receive_some(self, max_bytes: int) -> bytes:
        await trio.lowlevel.checkpoint()
        self.reads += 1
        return self.pieces.pop(0) if self.pieces else b""


class _Pool:
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def _chunked(datas: list[bytes], trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(d), d) for d in datas if d) + b"0\r\n" + trailer + b"\r\n"


def _body(raw: bytes, cuts: list[int], head_extra: bytes = b"") -> tuple[FastBody, h11.Connection, _Pieces]:
    state = h11.Connection(h11.CLIENT)
    state.send(h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
    state.send(h11.EndOfMessage())
    state.receive_data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + head_extra)
    assert type(state.next_event()) is h11.Response
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    pieces = [raw[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
    stream = _Pieces(pieces)
    return FastBody(_Pool(), state, stream, 65536), state, stream  # type: ignore[arg-type]  # a stand-in socket stream


async def _read_all(body: FastBody) -> bytes:
    return b"".join([chunk async for chunk in body])


@settings(max_examples=150, deadline=None)
@given(
    datas=st.lists(st.binary(min_size=0, max_size=40), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    head_split=st.integers(min_value=0, max_value=30),
    trailer=st.sampled_from([b"", b"x-end: 1\r\n"]),
)
def test_body_matches_h11_on_any_split(datas: list[bytes], cuts: list[int], head_split: int, trailer: bytes) -> None:
    raw = _chunked(datas, trailer)
    # some body bytes may arrive with the head (h11 has them buffered when we start)
    head_extra, rest = raw[:head_split], raw[head_split:]
    body, state, _ = _body(rest, cuts, head_extra)
    got = trio.run(_read_all, body)
    assert got == b"".join(datas)
    assert state.their_state is h11.DONE  # so the pool can reuse the connection


def test_body_takes_over_after_the_first_boundary_and_batches_complete_chunks() -> None:
    datas = [b"event: a\n\n", b"event: b\n\n", b"event: c\n\n"]
    raw = _chunked(datas)
    body, state, stream = _body(raw, [len(raw) - 5])  # all but the last 5 bytes in one read

    async def main() -> list[bytes]:
        return [chunk async for chunk in body]

    chunks = trio.run(main)
    assert chunks == [b"event: a\n\nevent: b\n\nevent: c\n\n"]  # three chunks, one read, one piece
    assert body._own is False and state.their_state is h11.DONE
    assert stream.reads == 2  # the two pieces; nothing is read after the end


def test_cut_body_is_a_remote_protocol_error_and_leaves_h11_mid_body() -> None:
    raw = _chunked([b"hello", b"world"])[:-7]
    body, state, _ = _body(raw, [3, 9])
    with pytest.raises(httpcore2.RemoteProtocolError, match="incomplete chunked read"):
        trio.run(_read_all, body)
    assert state.their_state is h11.SEND_BODY  # the pool will drop the connection


@pytest.mark.parametrize("header", [b"5", b"05", b"5 ", b"5\t", b"5;ext=1", b"5;a=b;c"])
def test_a_read_of_one_whole_chunk_takes_any_header_form_h11_takes(header: bytes) -> None:
    # each read is exactly one chunk (a paced stream's reads): the whole-chunk shortcut
    chunk = header + b"\r\nhello\r\n"
    pieces = [b"3\r\nabc\r\n", chunk, chunk, b"0\r\n\r\n"]
    body, state, stream = _body(b"", [])
    stream.pieces = list(pieces)
    got = trio.run(lambda: _read_chunks(body))
    assert got == [b"abc", b"hello", b"hello"]  # one chunk per read, in order
    assert state.their_state is h11.DONE
    h11_state = h11.Connection(h11.CLIENT)  # and h11 itself reads the same bytes the same way
    h11_state.send(h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
    h11_state.send(h11.EndOfMessage())
    h11_state.receive_data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"".join(pieces))
    events = [h11_state.next_event() for _ in range(4)]
    assert b"".join(bytes(e.data) for e in events if type(e) is h11.Data) == b"abchellohello"


@pytest.mark.parametrize("header", [b"-5", b"zz", b"+-5"])
def test_a_read_of_one_whole_chunk_with_a_bad_header_is_an_error(header: bytes) -> None:
    body, _, stream = _body(b"", [])
    stream.pieces = [b"3\r\nabc\r\n", header + b"\r\nhello\r\n"]
    with pytest.raises(httpcore2.RemoteProtocolError, match="illegal chunk header"):
        trio.run(_read_all, body)


async def _read_chunks(body: FastBody) -> list[bytes]:
    return [chunk async for chunk in body]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"zz\r\nhello\r\n0\r\n\r\n", "illegal chunk header"),
        (b"5\r\nhelloXX0\r\n\r\n", "malformed chunk footer"),
        (b"f" * 2000, "chunk header too long"),
    ],
)
def test_malformed_body_is_a_remote_protocol_error(raw: bytes, message: str) -> None:
    body, _, _ = _body(raw, [])
    with pytest.raises(httpcore2.RemoteProtocolError, match=message):
        trio.run(_read_all, body)


def test_aclose_closes_the_pool_stream_once() -> None:
    body, _, _ = _body(_chunked([b"x"]), [])
    pool: Any = body._pool_stream

    async def main() -> None:
        await body.aclose()
        await body.aclose()

    trio.run(main)
    assert pool.closed == 1


# -- over a real socket: the descriptor path (wait_readable + os.read) ---------------------


def _socket_body(head_extra: bytes = b"") -> tuple[FastBody, h11.Connection, trio.SocketStream, trio.SocketStream]:
    state = h11.Connection(h11.CLIENT)
    state.send(h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
    state.send(h11.EndOfMessage())
    state.receive_data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + head_extra)
    assert type(state.next_event()) is h11.Response
    ours, theirs = (trio.SocketStream(s) for s in trio.socket.socketpair())
    return FastBody(_Pool(), state, ours, 64), state, ours, theirs


@settings(max_examples=40, deadline=None)
@given(
    datas=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
    pause=st.booleans(),
)
def test_socket_body_matches_the_sent_chunks_on_any_split(datas: list[bytes], cuts: list[int], pause: bool) -> None:
    # READ_NUM_BYTES is 64 so that reads fill the buffer (the read-before-wait path) as well as not
    raw = _chunked(datas)
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    pieces = [raw[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]

    async def main() -> tuple[bytes, int]:
        body, state, ours, theirs = _socket_body()
        assert body._fd == ours.socket.fileno()  # the descriptor path, not the stream's receive_some
        got: list[bytes] = []

        async def write() -> None:
            for piece in pieces:
                await theirs.send_all(piece)
                if pause:
                    await trio.sleep(0.001)  # the reader waits for each piece

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            got.extend([chunk async for chunk in body])
        assert state.their_state is h11.DONE
        await theirs.aclose()
        await ours.aclose()
        return b"".join(got), len(got)

    got, _ = trio.run(main)
    assert got == b"".join(datas)


async def test_socket_body_peer_closing_mid_body_is_a_remote_protocol_error() -> None:
    body, state, ours, theirs = _socket_body()
    await theirs.send_all(b"5\r\nhello\r\n3\r\nwo")
    assert await body.__anext__() == b"hellowo"  # a chunk's data is passed on as it arrives
    await theirs.aclose()
    with pytest.raises(httpcore2.RemoteProtocolError, match="incomplete chunked read"):
        await body.__anext__()
    assert state.their_state is h11.SEND_BODY  # the pool drops the connection
    await ours.aclose()


async def test_socket_body_reset_by_peer_is_a_read_error() -> None:
    import socket
    import struct

    body, _, ours, theirs = _socket_body()
    await theirs.send_all(b"5\r\nhello\r\n")
    assert await body.__anext__() == b"hello"
    # RST instead of FIN: SO_LINGER with a zero timeout, then close
    theirs.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await theirs.aclose()
    with pytest.raises((httpcore2.ReadError, httpcore2.RemoteProtocolError)):
        await body.__anext__()
    await ours.aclose()


async def test_socket_body_cancelled_while_waiting_reads_nothing_and_resumes() -> None:
    body, _, ours, theirs = _socket_body()
    with trio.move_on_after(0.05) as scope:
        await body.__anext__()  # nothing sent: waits on the descriptor
    assert scope.cancelled_caught
    await theirs.send_all(b"3\r\nabc\r\n0\r\n\r\n")
    assert [chunk async for chunk in body] == [b"abc"]
    await theirs.aclose()
    await ours.aclose()


async def test_socket_body_closed_under_a_waiting_reader_is_a_read_error() -> None:
    body, _, ours, theirs = _socket_body()
    await theirs.send_all(b"5\r\nhel")
    assert await body.__anext__() == b"hel"
    raised: list[BaseException] = []

    async def reader() -> None:
        try:
            await body.__anext__()
        except httpcore2.ReadError as exc:
            raised.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await ours.aclose()  # the pool closing the connection while the body waits on it
    assert len(raised) == 1
    await theirs.aclose()


async def test_socket_body_never_reads_a_descriptor_its_socket_gave_up() -> None:
    body, _, ours, theirs = _socket_body()
    await theirs.send_all(b"5\r\nhello\r\n")
    assert await body.__anext__() == b"hello"
    await ours.aclose()  # closed between reads: the number may be reused by the next socket
    with pytest.raises(httpcore2.ReadError, match="closed"):
        await body.__anext__()
    await theirs.aclose()
