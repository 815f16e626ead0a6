"""The HTTP fast path: a streamed response body read from httpcore's connection directly.

A streamed body normally comes through four layers of async generators
(httpx's two streams, httpcore's pool stream, its HTTP/1.1 connection) and
h11's chunk parser, for every read; a paced stream has one event per read, so
those layers cost more than the event. ``FastBody`` reads the socket of
httpcore's HTTP/1.1 connection itself and parses the chunked framing.

That needs private attributes of httpx2, httpcore2 and h11, so it sits behind
one door, ``open_fast_body``: it checks the installed versions against those
the fast path was tested with (``TESTED_VERSIONS``, the ranges declared in
``pyproject.toml``), then every attribute the fast path will use, and returns
either a ``FastBody`` or a ``NoFastBody`` saying why not. A reason that is no
fault of the layout (a compressed body, HTTP/2, another transport) is quiet;
any other, on the first stream it happens to, warns once per process with a
``FastPathWarning``. ``tests/test_fastbody_engages.py`` runs the real stack
and fails when the door stops opening.

``open_plain_body`` is the way without the fast path: httpcore's pool stream
iterated directly (httpx2's ``AsyncResponseStream`` abandons the innermost
async generator unexhausted when closed early, which trio reports as a
``ResourceWarning``), or ``Response.aiter_bytes`` for a compressed body.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import warnings
from collections.abc import AsyncIterator
from typing import Any, Final

import attrs
import h11
import httpcore2
import httpx2
import trio

__all__ = (
    "TESTED_VERSIONS",
    "FastBody",
    "FastPathWarning",
    "NoFastBody",
    "open_fast_body",
    "open_plain_body",
)

#: The release series of each package whose private layout the fast path reads and was tested
#: with; pyproject.toml declares the same ranges (a test checks that they agree).
TESTED_VERSIONS: Final = {"h11": "0.16", "httpcore2": "2.17", "httpx2": "2.17"}


class FastPathWarning(RuntimeWarning):
    """The HTTP fast path did not engage although the installed versions are the tested ones.

    Streams still work, through the HTTP client's own layers, only slower;
    the message says which part of the layout did not match. Warned once
    per process.
    """


@attrs.frozen
class NoFastBody:
    """Why ``open_fast_body`` did not open the fast path."""

    reason: str
    """What did not match, in words."""
    expected: bool
    """True for a reason that is no fault of the layout (compressed body, HTTP/2, another
    transport): no warning is given for it."""


# Once per process: a layout that does not match stays so for every later stream, and one
# warning says all there is to say. Tests reset it with monkeypatch.
_warned = False


def open_fast_body(response: httpx2.Response) -> FastBody | NoFastBody:
    """Open *response*'s body on the fast path, or return why not.

    Reads nothing: the checks look at the installed versions and the objects
    under *response*. The first unexpected reason of the process is also
    warned as a ``FastPathWarning``.
    """
    problem = _version_problem()
    if problem is not None:
        return _not_engaged(problem)
    encoding = response.headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", ""):
        return NoFastBody(f"the body is compressed ({encoding})", expected=True)
    network = response.extensions.get("network_stream")
    if response.extensions.get("http_version") != b"HTTP/1.1" or network is None:
        return NoFastBody("not an HTTP/1.1 response from httpcore (HTTP/2, or another transport)", expected=True)
    pool_stream = _pool_stream(response)
    if pool_stream is None:
        return _not_engaged("httpx2's response stream does not lead to httpcore's pool stream")
    connection = getattr(getattr(pool_stream, "_stream", None), "_connection", None)
    if connection is None or getattr(connection, "_network_stream", None) is not network:
        return _not_engaged("httpcore's pool stream does not lead to its connection (_stream._connection)")
    state = getattr(connection, "_h11_state", None)
    if not isinstance(state, h11.Connection):
        return _not_engaged("httpcore's HTTP/1.1 connection has no h11 state (_h11_state)")
    socket_stream = getattr(network, "_stream", None)
    if not isinstance(socket_stream, trio.abc.Stream):
        return _not_engaged("httpcore's network stream is not over a trio stream (_stream)")
    read_size = getattr(connection, "READ_NUM_BYTES", None)
    if not isinstance(read_size, int):
        return _not_engaged("httpcore's HTTP/1.1 connection has no read size (READ_NUM_BYTES)")
    problem = _h11_reader_problem(state)
    if problem is not None:
        return _not_engaged(problem)
    return FastBody(pool_stream, state, socket_stream, read_size)


def open_plain_body(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body without the fast path: httpcore's pool stream iterated, else ``aiter_bytes``.

    The caller closes the iterator it gets (``aclose``), then the response.
    """
    if response.headers.get("content-encoding", "identity").lower() in ("identity", ""):
        pool_stream = _pool_stream(response)
        if pool_stream is not None:
            return pool_stream.__aiter__()
    return response.aiter_bytes()


def _not_engaged(reason: str) -> NoFastBody:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"sluiceway's HTTP fast path did not engage, response bodies take the slower way: {reason}",
            FastPathWarning,
            stacklevel=3,
        )
    return NoFastBody(reason, expected=False)


@functools.cache
def _version_problem() -> str | None:
    """Why the installed versions are not the tested ones, or None."""
    for package, series in TESTED_VERSIONS.items():
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return f"cannot tell which version of {package} is installed"
        if version != series and not version.startswith(series + "."):
            return f"{package} {version} is not a version the fast path was tested with ({series}.x)"
    return None


def _pool_stream(response: httpx2.Response) -> Any:
    """httpcore's pool stream under httpx2's response stream layers, or None."""
    stream: Any = response.stream
    for _ in range(8):
        if stream is None:
            return None
        if hasattr(stream, "_pool_request"):
            return stream
        stream = next(
            (getattr(stream, attr) for attr in ("_stream", "_async_body", "_httpcore_stream") if hasattr(stream, attr)),
            None,
        )
    return None


def _h11_reader_problem(state: h11.Connection) -> str | None:
    """Why ``FastBody`` could not tell where h11 stands in a chunked body, or None."""
    if not hasattr(state, "_receive_buffer") or not hasattr(state, "_reader"):
        return "h11's connection has no _receive_buffer or _reader"
    reader = state._reader
    if type(reader).__name__ != "ChunkedReader":
        return None  # a body with a length: h11 reads it all, nothing else is needed
    missing = [name for name in _CHUNKED_READER_STATE if not hasattr(reader, name)]
    if missing:
        return f"h11's ChunkedReader has no {', '.join(missing)}"
    return None


# what _at_chunk_boundary reads of h11's ChunkedReader
_CHUNKED_READER_STATE: Final = ("_bytes_in_chunk", "_bytes_to_discard", "_reading_trailer")


def _at_chunk_boundary(state: h11.Connection) -> bool:
    """True when h11 reads a chunked body, between chunks, with nothing buffered."""
    reader: Any = state._reader  # h11 types it as any reader; the door checked its attributes
    return (
        type(reader).__name__ == "ChunkedReader"
        and state.their_state is h11.SEND_BODY
        and reader._bytes_in_chunk == 0
        and reader._bytes_to_discard == b""
        and reader._reading_trailer is False
        and len(state._receive_buffer) == 0
    )


def _socket_fd(stream: Any) -> int:
    """The file descriptor under a trio ``SocketStream``, or -1 (another kind of stream: TLS, say)."""
    if type(stream) is not trio.SocketStream:
        return -1
    try:
        return stream.socket.fileno()
    except (AttributeError, OSError):
        return -1


class FastBody:
    """The body of an HTTP/1.1 response, read from the connection without httpcore's layers.

    h11 reads until it stands at a chunk boundary with nothing buffered
    (normally at once); from there the chunked framing is parsed here
    (``_parse``), every complete chunk that arrived returned at once; the
    final ``0`` chunk and the trailer go back to h11, so the connection's
    state ends ``DONE`` and the pool reuses it (``aclose`` is the pool
    stream's own). A body cut short leaves h11 mid-body: the pool then drops
    the connection. A body with a length is h11's to read all along.

    Errors are httpcore's: ``ReadError`` for a broken or closed socket,
    ``RemoteProtocolError`` for a malformed or cut body.

    Args:
        pool_stream: httpcore's pool stream for the response (closed by ``aclose``).
        h11_state: The connection's h11 state, standing after the response head.
        socket_stream: The trio stream under the connection.
        read_size: The most bytes one read asks for.
    """

    __slots__ = (
        "_buf", "_closed", "_crlf", "_fd", "_full", "_h11", "_left", "_own", "_pool_stream", "_read_size",
        "_socket_stream",
    )

    def __init__(
        self, pool_stream: Any, h11_state: h11.Connection, socket_stream: trio.abc.Stream, read_size: int
    ) -> None:
        self._pool_stream = pool_stream
        self._h11 = h11_state
        self._socket_stream: Any = socket_stream
        self._read_size = read_size
        self._fd = _socket_fd(socket_stream)
        """The socket's descriptor, read directly once we parse the framing (-1: use the trio stream).

        Trio's ``receive_some`` tries the read first and waits on ``EAGAIN``. A
        paced stream has nothing waiting when we come back for more, so that
        try fails on almost every event: we wait first (``wait_readable`` is
        the checkpoint), unless the last read filled the buffer. That saves a
        failed system call, an exception and five Python frames per read.
        """
        self._full = False
        """True when the last read filled ``_read_size``: more is likely waiting, so read before waiting."""
        self._closed = False
        self._own = False
        """True while the chunked framing is parsed here rather than by h11."""
        self._buf = b""
        self._left = 0
        """Bytes of the current chunk's data still to come."""
        self._crlf = 0
        """Bytes of the CRLF after the current chunk's data still to come."""

    def __aiter__(self) -> FastBody:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._own:
                if self._buf:
                    data = self._parse()
                    if data:
                        return data
                    if not self._own:
                        continue
                fd = self._fd
                if fd < 0:
                    self._append(await self._receive())
                    continue
                # the descriptor read, inline (two coroutine levels fewer per read); before each
                # wait and read, the socket must still own the descriptor: closed under us (the
                # client shut mid-stream), its number could already name another connection's socket
                size = self._read_size
                sock = self._socket_stream.socket
                try:
                    while True:
                        if self._full:  # the last read filled the buffer: more is likely waiting
                            await trio.lowlevel.checkpoint()
                        else:
                            if sock.fileno() != fd:
                                raise trio.ClosedResourceError("the connection was closed")
                            await trio.lowlevel.wait_readable(fd)
                        if sock.fileno() != fd:
                            raise trio.ClosedResourceError("the connection was closed")
                        try:
                            data = os.read(fd, size)
                            break
                        except BlockingIOError:
                            self._full = False  # nothing there (or a spurious readiness): wait for it
                except (trio.ClosedResourceError, trio.BusyResourceError) as exc:
                    raise httpcore2.ReadError(str(exc)) from exc
                except OSError as exc:
                    raise httpcore2.ReadError(str(exc) or type(exc).__name__) from exc
                self._full = len(data) == size
                self._append(data)
                continue
            state = self._h11
            try:
                event = state.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpcore2.RemoteProtocolError(str(exc)) from exc
            kind = type(event)
            if kind is h11.Data:
                return bytes(event.data)  # type: ignore[union-attr]  # kind is h11.Data
            if event is h11.NEED_DATA:
                if _at_chunk_boundary(state):
                    self._own = True
                    continue
                data = await self._receive()
                state.receive_data(data)
            elif kind is h11.EndOfMessage or event is h11.PAUSED:
                raise StopAsyncIteration

    async def _receive(self) -> bytes:
        try:
            return await self._socket_stream.receive_some(self._read_size)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise httpcore2.ReadError(str(exc)) from exc

    def _append(self, data: bytes) -> None:
        """Add a read's bytes to the buffer; none (the peer closed) mid-body is an error."""
        if not data:
            raise httpcore2.RemoteProtocolError(
                "peer closed connection without sending complete message body (incomplete chunked read)"
            )
        self._buf = self._buf + data if self._buf else data

    def _parse(self) -> bytes:
        """Return the chunk data complete in the buffer (maybe b""); hand the last chunk to h11."""
        buf = self._buf
        if not self._left and not self._crlf:  # at a chunk's start: a read of one whole chunk is the rule
            line_end = buf.find(b"\r\n")
            if line_end > 0:
                try:
                    size = int(buf[:line_end], 16)  # what the loop below accepts, or it decides
                except ValueError:
                    size = 0
                if size > 0 and len(buf) == line_end + size + 4 and buf.endswith(b"\r\n"):
                    self._buf = b""
                    return buf[line_end + 2 : -2]
        end_of_buf = len(buf)
        pos = 0
        parts: list[bytes] = []
        while True:
            if self._left:
                take = min(self._left, end_of_buf - pos)
                if take:
                    parts.append(buf[pos : pos + take])
                    pos += take
                    self._left -= take
                if self._left:
                    break
                self._crlf = 2
            if self._crlf:
                have = min(self._crlf, end_of_buf - pos)
                expected = b"\r\n"[2 - self._crlf : 2 - self._crlf + have]
                if buf[pos : pos + have] != expected:
                    raise httpcore2.RemoteProtocolError(f"malformed chunk footer: {buf[pos : pos + have]!r}")
                pos += have
                self._crlf -= have
                if self._crlf:
                    break
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                if end_of_buf - pos > 1024:
                    raise httpcore2.RemoteProtocolError("chunk header too long")
                break
            header = buf[pos:line_end]
            try:
                size = int(header.split(b";", 1)[0].strip(b" \t"), 16)
            except ValueError:
                raise httpcore2.RemoteProtocolError(f"illegal chunk header: {header!r}") from None
            if size < 0:
                raise httpcore2.RemoteProtocolError(f"illegal chunk header: {header!r}")
            if size == 0:  # the last chunk: h11 reads it and the trailer, and ends the message
                self._h11.receive_data(buf[pos:])
                self._own = False
                pos = end_of_buf
                break
            pos = line_end + 2
            self._left = size
        self._buf = buf[pos:] if pos < end_of_buf else b""
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    async def aclose(self) -> None:
        """Close httpcore's pool stream (once): the pool keeps or drops the connection."""
        if not self._closed:
            self._closed = True
            await self._pool_stream.aclose()
