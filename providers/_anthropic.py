"""The live provider: Anthropic's Messages API through the official SDK.

The SDK builds the request, authenticates, and turns HTTP status errors into
its exceptions; we read the streaming response's bytes ourselves
(``providers._sse``) because the SDK's decoder swallows ``ping`` events (so a
stalled stream would look alive) and is about half as fast. Every SDK and
transport error becomes a ``ProviderError`` in one place, ``map_error``.

Deadlines run on trio's clock: ``request.first_token_timeout`` from the
request until the first delta (text, thinking or tool input), then
``request.idle_timeout`` between events that are not ``ping`` (without a
first-token timeout, the idle one applies from the request on).
"""

from __future__ import annotations

import collections
import contextvars
import inspect
import json
import json.scanner
import math
import os
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

import anthropic
import anyio
import attrs
import h11
import httpcore2
import httpx2
import trio
from sluiceway.engine._events import Usage
from sluiceway.engine._protocols import ModelRequest
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

from sluiceway._errors import (
    AuthenticationError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    StreamInterruptedError,
)

from ._sse import SSEParser

__all__ = ("AnthropicProvider", "map_error")

#: Seconds allowed to close a response when leaving a call (shielded).
CLOSE_TIMEOUT: Final = 2.0
#: Seconds to wait for the body's end after ``message_stop`` (then the connection is dropped).
DRAIN_TIMEOUT: Final = 1.0
#: ``AnthropicProvider``'s default ``max_starting``.
DEFAULT_MAX_STARTING: Final = 16

# request.extra keys passed to messages.create as they are
_PASSTHROUGH: Final = frozenset(
    {"thinking", "metadata", "top_p", "top_k", "stop_sequences", "tool_choice", "service_tier"}
)
# the keyword arguments messages.create() accepts in the installed SDK
_CREATE_PARAMS: Final = frozenset(
    inspect.signature(anthropic.resources.messages.AsyncMessages.create).parameters
)


class AnthropicProvider:
    """Streams calls to the Messages API with the official ``anthropic`` SDK.

    The provider makes its ``AsyncAnthropic`` clients itself (with the SDK's
    retries off: the engine retries) and ``aclose`` closes them. It makes one at
    the first call, and another whenever every client it has carries
    ``streams_per_client`` open streams: httpcore's connection pool scans all of
    its connections when a request starts and when a response closes, so one
    pool under 1,000 concurrent streams spends ~1 ms of CPU per request and per
    close on the scan alone. A client given as ``client`` is used for every call.

    A request's ``extra`` may hold ``headers`` (sent with the request) and the
    Messages API fields ``thinking``, ``metadata``, ``top_p``, ``top_k``,
    ``stop_sequences``, ``tool_choice`` and ``service_tier``; fields the
    installed SDK has no argument for go in the JSON body as they are.

    Args:
        api_key: The API key; default ``ANTHROPIC_API_KEY`` (or a bearer token in
            ``ANTHROPIC_AUTH_TOKEN``). Neither is an ``AuthenticationError`` at
            the first call, before any request.
        base_url: The API's base URL; default ``ANTHROPIC_BASE_URL``, else the SDK's.
        client: An ``anthropic.AsyncAnthropic`` to use instead (not closed by us).
        default_model: The model when the request names none.
        max_tokens: The output cap when the request sets none.
        streams_per_client: Open streams per client the provider makes (see above).
        max_starting: At most this many calls run the CPU-bound part of their
            start at once: building the request and sending its head (the
            SDK, httpx, httpcore and h11 take ~1.3 ms of CPU per call here). A
            call gives its turn back while it connects (TCP, TLS), takes it
            again to send the request head, and gives it back for good once
            the body is being sent, so it waits for the response with no turn
            held, and against a remote API the limit does not cap a burst at
            so many starts per round trip. Without it, a burst of starts
            runs in the same scheduler passes as the streams already flowing,
            and their deltas wait: measured with 1,000 streams started within
            a second on loopback, the p99 lag of the deltas sent during the
            start-up was 42-49 ms with 8 or 16 and 147-202 ms with no limit
            (bench/README.md). Waiting for a turn counts against the
            first-token deadline. ``None``: no limit. Applies to the clients
            the provider makes, not to a ``client`` given.
    """

    name = "anthropic"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: anthropic.AsyncAnthropic | None = None,
        default_model: str = "claude-sonnet-4-5",
        max_tokens: int = 4096,
        streams_per_client: int = 64,
        max_starting: int | None = DEFAULT_MAX_STARTING,
    ) -> None:
        if streams_per_client < 1:
            raise ValueError("streams_per_client must be at least 1")
        if max_starting is not None and max_starting < 1:
            raise ValueError("max_starting must be at least 1 (or None: no limit)")
        self.api_key = api_key or os.environ.get("ANTHROPIC_API_KEY") or None
        self._auth_token = None if self.api_key else os.environ.get("ANTHROPIC_AUTH_TOKEN") or None
        self.base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        self.default_model = default_model
        self.max_tokens = max_tokens
        self.streams_per_client = streams_per_client
        self.max_starting = max_starting
        self._starting = trio.CapacityLimiter(max_starting) if max_starting is not None else None
        self._client = client
        self._owns_client = client is None
        # the clients we made, the first one first, and each one's open streams
        self._clients: list[anthropic.AsyncAnthropic] = []
        self._open: dict[int, int] = {}
        self._closed = False

    def client(self, step: str | None = None) -> anthropic.AsyncAnthropic:
        """Return the SDK client, making it on first use.

        Raises:
            AuthenticationError: No API key was given or set in the environment.
            trio.ClosedResourceError: The provider was closed.
        """
        if self._closed:
            raise trio.ClosedResourceError("the anthropic provider is closed")
        if self._client is None:
            self._client = self._new_client(step)
        return self._client

    def _new_client(self, step: str | None) -> anthropic.AsyncAnthropic:
        if not self.api_key and not self._auth_token:
            raise AuthenticationError("no Anthropic API key: set ANTHROPIC_API_KEY (live mode needs one)", step=step)
        client = anthropic.AsyncAnthropic(
            api_key=self.api_key,
            auth_token=self._auth_token,
            base_url=self.base_url,
            max_retries=0,
            # the SDK's own httpx client, plus the trace that gives a call's start-up turn back
            http_client=anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [_install_trace]}),
        )
        self._clients.append(client)
        self._open[id(client)] = 0
        return client

    def _checkout(self, step: str | None) -> anthropic.AsyncAnthropic:
        """The client for a new stream (counted open until ``_checkin``)."""
        client = self.client(step)
        if not self._owns_client:
            return client
        open_streams = self._open
        if open_streams[id(client)] >= self.streams_per_client:
            client = next(
                (c for c in self._clients if open_streams[id(c)] < self.streams_per_client), None
            ) or self._new_client(step)
        open_streams[id(client)] += 1
        return client

    def _checkin(self, client: anthropic.AsyncAnthropic) -> None:
        key = id(client)
        if key in self._open:
            self._open[key] -= 1

    def stream(self, request: ModelRequest) -> _AnthropicCall:
        """Open one streamed call; use as ``async with provider.stream(request) as events``.

        Entering sends the request and waits for the response head (within the
        first-token deadline); iterating reads and normalizes the stream.
        Leaving closes the HTTP response at once (shielded, bounded by
        ``CLOSE_TIMEOUT``), also when cancelled: an unfinished response closes
        its connection. The consumer pulls, so nothing here blocks for
        backpressure. Errors are ``ProviderError``s naming ``request.step``.
        """
        return _AnthropicCall(self, request)

    async def aclose(self) -> None:
        """Close the SDK client we made (idempotent; shielded and bounded)."""
        self._closed = True
        self._client = None
        clients, self._clients = self._clients, []
        self._open = {}
        if self._owns_client and clients:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                for client in clients:
                    await client.close()
        await trio.lowlevel.checkpoint()

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model or self.default_model,
            "max_tokens": request.max_tokens or self.max_tokens,
            "messages": list(request.messages),
            "stream": True,
        }
        if request.system:
            params["system"] = request.system
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.tools:
            params["tools"] = list(request.tools)
        extra = request.extra or {}
        for key in _PASSTHROUGH.intersection(extra):
            params[key] = extra[key]
        # fields this SDK's create() has no argument for (temperature in 2.x) go in the body
        body = {k: params.pop(k) for k in list(params) if k not in _CREATE_PARAMS}
        if body:
            params["extra_body"] = body
        if extra.get("headers"):
            params["extra_headers"] = dict(extra["headers"])
        return params

    def statistics(self) -> AnthropicStatistics:
        """The provider's clients and streams now (a snapshot; see ``AnthropicStatistics``)."""
        return AnthropicStatistics(
            clients=len(self._clients), open_streams=sum(self._open.values()), fast_bodies=0, slow_bodies=0
        )


@attrs.frozen
class AnthropicStatistics:
    """What ``AnthropicProvider.statistics()`` reports."""

    clients: int
    """SDK clients the provider made (a ``client`` given counts as none)."""
    open_streams: int
    """Calls open now on the clients the provider made."""
    fast_bodies: int
    """Response bodies read by the fast path (not counted yet: always 0)."""
    slow_bodies: int
    """Response bodies read by the general path (not counted yet: always 0)."""


class _AnthropicCall:
    """One streamed call: an async context manager and the iterator it yields."""

    def __init__(self, provider: AnthropicProvider, request: ModelRequest) -> None:
        self._provider = provider
        self._request = request
        self._step = request.step
        self._response: httpx2.Response | None = None
        self._sdk_client: anthropic.AsyncAnthropic | None = None
        """The client this call streams through (checked back in when it ends)."""
        self._chunks: Any = None
        self._parser = SSEParser()
        self._ready: collections.deque[ProviderEvent] = collections.deque()
        self._deadline = math.inf
        self._started = False
        self._done = False
        self._request_id: str | None = None
        self._error: ProviderError | None = None
        # indices of the open blocks we passed on (others' deltas and stops are dropped)
        self._blocks: set[int] = set()

    async def __aenter__(self) -> _AnthropicCall:
        request = self._request
        params = self._provider._params(request)
        client = self._sdk_client = self._provider._checkout(self._step)
        now = trio.current_time()
        if request.first_token_timeout is not None:
            self._deadline = now + request.first_token_timeout
        elif request.idle_timeout is not None:
            self._deadline = now + request.idle_timeout
        try:
            try:
                with trio.move_on_at(self._deadline) as scope:
                    starting = self._provider._starting
                    if starting is None or not self._provider._owns_client:
                        sdk_stream = await client.messages.create(**params)
                    else:  # wait our turn (within the first-token deadline)
                        turn = _Turn(starting)
                        await turn.take()
                        reset = _TURN.set(turn)
                        try:
                            sdk_stream = await client.messages.create(**params)
                        finally:
                            _TURN.reset(reset)
                            turn.give_back()
            except Exception as exc:
                raise map_error(exc, self._step) from exc
            if scope.cancelled_caught:
                raise ProviderTimeoutError(
                    f"no response from the API within {request.first_token_timeout or request.idle_timeout} s",
                    step=self._step,
                )
        except BaseException:
            self._checkin()  # __aexit__ will not run
            raise
        self._response = sdk_stream.response
        self._request_id = self._response.headers.get("request-id")
        self._chunks = _open_body(self._response)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._checkin()
        response, self._response = self._response, None
        chunks, self._chunks = self._chunks, None
        if response is None:
            return
        # an unfinished response closes its connection: the server sees us leave at once
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            try:
                if chunks is not None:
                    await chunks.aclose()
            finally:
                await response.aclose()

    def _checkin(self) -> None:
        client, self._sdk_client = self._sdk_client, None
        if client is not None:
            self._provider._checkin(client)

    def __aiter__(self) -> _AnthropicCall:
        return self

    async def __anext__(self) -> ProviderEvent:
        ready = self._ready
        while not ready:
            if self._error is not None:
                raise self._error
            if self._done or self._chunks is None:
                await self._drain()
                raise StopAsyncIteration
            if self._deadline == math.inf:  # no deadline: no cancel scope, and the read inline
                try:
                    chunk = await self._chunks.__anext__()
                except StopAsyncIteration:
                    raise self._ended() from None
                except Exception as exc:
                    raise map_error(exc, self._step) from exc
            else:
                chunk = await self._read_by_deadline()
            self._take(chunk)
        return ready.popleft()

    async def _drain(self) -> None:
        # read the body's end after message_stop so the connection can be reused
        chunks = self._chunks
        if chunks is None:
            return
        with trio.move_on_after(DRAIN_TIMEOUT):
            try:
                async for _ in chunks:
                    pass
            except Exception:
                return  # the close will drop the connection instead
            self._chunks = None

    def _ended(self) -> StreamInterruptedError:
        self._chunks = None
        return StreamInterruptedError("the stream ended before message_stop", step=self._step)

    async def _read_by_deadline(self) -> bytes:
        """Read one chunk within the current deadline."""
        try:
            with trio.move_on_at(self._deadline) as scope:
                chunk: bytes = await self._chunks.__anext__()
        except StopAsyncIteration:
            raise self._ended() from None
        except Exception as exc:
            raise map_error(exc, self._step) from exc
        if scope.cancelled_caught:
            first = self._request.first_token_timeout
            if self._started or first is None:
                what = f"no progress from the API within the idle deadline ({self._request.idle_timeout} s)"
            else:
                what = f"no first token from the API within the first-token deadline ({first} s)"
            raise ProviderTimeoutError(what, step=self._step)
        return chunk

    def _take(self, chunk: bytes) -> None:
        """Normalize a chunk's events into ``_ready``; a deadline moves on with progress."""
        pairs = self._parser.feed(chunk)
        ready = self._ready
        if len(pairs) == 1:  # a paced stream's read: one event, no lists
            name, data = pairs[0]
            on_event = _HANDLERS.get(name)  # type: ignore[arg-type]
            if on_event is None or not data:
                return  # a ping, or nothing we pass on: not progress
            event = on_event(self, self._load(data))
            if event is not None:
                if not self._started and isinstance(event, _DELTAS):
                    self._started = True
                ready.append(event)
        else:
            events = [(name, data) for name, data in pairs if name in _HANDLERS and data]
            if not events:
                return  # pings, comments or a partial event: not progress
            payloads = self._loads([data for _, data in events])
            for (name, _), payload in zip(events, payloads, strict=True):
                event = _HANDLERS[name](self, payload)
                if event is None:
                    if self._error is not None:
                        break
                    continue
                if not self._started and isinstance(event, _DELTAS):
                    self._started = True
                ready.append(event)
        request = self._request
        if self._started or request.first_token_timeout is None:
            idle = request.idle_timeout
            self._deadline = trio.current_time() + idle if idle is not None else math.inf

    def _load(self, data: str) -> Any:
        """One event's JSON: json's own C scanner (json.loads adds two Python calls and two
        regex matches); json.loads for what the scan does not take whole (surrounding
        whitespace), which also names a malformed event."""
        try:
            value, end = _scan_json(data, 0)
            if end == len(data):
                return value
        except (ValueError, StopIteration):
            pass
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ProviderError(f"malformed event from the API: {data[:80]!r}", step=self._step) from exc

    def _loads(self, datas: list[str]) -> list[Any]:
        """Several events' JSON in one scan (about 2.5x faster than one per event)."""
        if len(datas) == 1:
            return [self._load(datas[0])]
        text = "[" + ",".join(datas) + "]"
        try:
            value, end = _scan_json(text, 0)
            if end == len(text) and len(value) == len(datas):
                return value  # type: ignore[no-any-return]
        except (ValueError, StopIteration):
            pass
        return [self._load(data) for data in datas]

    # -- normalizers: one per SSE event name ----------------------------------

    def _on_message_start(self, payload: dict[str, Any]) -> ProviderEvent:
        message = payload.get("message") or {}
        return MessageStart(
            model=message.get("model"),
            usage=_usage(message.get("usage") or {}),
            message_id=message.get("id"),
            request_id=self._request_id,
        )

    def _on_block_start(self, payload: dict[str, Any]) -> ProviderEvent | None:
        block = payload.get("content_block") or {}
        kind = block.get("type")
        index = payload.get("index", 0)
        if kind == "text":
            event = BlockStart(index, "text")
        elif kind in ("thinking", "redacted_thinking"):
            event = BlockStart(index, "thinking")
        elif kind == "tool_use":
            event = BlockStart(
                index, "tool_use", tool_use_id=block.get("id"), name=block.get("name")
            )
        else:
            # server tools and their results run at the API: not ours to run or show
            return None
        self._blocks.add(index)
        return event

    def _on_block_delta(self, payload: dict[str, Any]) -> ProviderEvent | None:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        index = payload.get("index", 0)
        if index not in self._blocks:
            return None
        if kind == "text_delta":
            return TextChunk(index, delta.get("text", ""))
        if kind == "input_json_delta":
            return InputJsonChunk(index, delta.get("partial_json", ""))
        if kind == "thinking_delta":
            return ThinkingChunk(index, delta.get("thinking", ""))
        if kind == "signature_delta":
            return ThinkingChunk(index, "", signature=delta.get("signature", ""))
        return None

    def _on_block_stop(self, payload: dict[str, Any]) -> ProviderEvent | None:
        index = payload.get("index", 0)
        if index not in self._blocks:
            return None
        self._blocks.discard(index)
        return BlockStop(index)

    def _on_message_delta(self, payload: dict[str, Any]) -> ProviderEvent:
        delta = payload.get("delta") or {}
        usage = payload.get("usage") or {}
        extra = {k: v for k, v in delta.items() if k != "stop_reason" and v is not None}
        return MessageDeltaInfo(
            stop_reason=delta.get("stop_reason"),
            usage=Usage(output_tokens=usage.get("output_tokens") or 0),
            extra=extra or None,
        )

    def _on_message_stop(self, payload: dict[str, Any]) -> ProviderEvent:
        self._done = True
        return MessageStop()

    def _on_error(self, payload: dict[str, Any]) -> None:
        # what the SDK raises for a mid-stream error event (status 200), then mapped
        assert self._response is not None
        exc = anthropic.APIStatusError(f"{payload}", response=self._response, body=payload)
        error = map_error(exc, self._step)
        error.__cause__ = exc
        # raised once the events before it are delivered
        self._error = error
        return None


#: json's scanner (the C one when built): ``(value, end)`` for the JSON value at an index
_scan_json: Final = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]

# the events that end the first-token wait
_DELTAS: Final = (TextChunk, ThinkingChunk, InputJsonChunk)

_HANDLERS: dict[str, Callable[[_AnthropicCall, dict[str, Any]], ProviderEvent | None]] = {
    "message_start": _AnthropicCall._on_message_start,
    "content_block_start": _AnthropicCall._on_block_start,
    "content_block_delta": _AnthropicCall._on_block_delta,
    "content_block_stop": _AnthropicCall._on_block_stop,
    "message_delta": _AnthropicCall._on_message_delta,
    "message_stop": _AnthropicCall._on_message_stop,
    "error": _AnthropicCall._on_error,
}


class _H11Body:
    """The body of an HTTP/1.1 response, read from the connection without httpcore's layers.

    httpcore's ``_receive_response_body`` costs, per read, two async generator
    layers, a cancel scope, three context managers and h11's chunk parser
    (together ~20 µs; a paced stream has one event per chunk). Here h11 reads
    until it stands at a chunk boundary with nothing buffered (normally at
    once), then the chunked framing is parsed here (``_parse``), every
    complete chunk that arrived returned at once; the final ``0`` chunk and
    the trailer go back to h11, so the connection's state ends ``DONE`` and
    the pool reuses it (``aclose`` is the pool stream's own). A body cut
    short leaves h11 mid-body: the pool then drops the connection.

    Errors are httpcore's: ``ReadError`` for a broken or closed socket,
    ``RemoteProtocolError`` for a malformed or cut body.
    """

    __slots__ = (
        "_buf", "_closed", "_crlf", "_fd", "_full", "_h11", "_left", "_own", "_pool_stream", "_read_size",
        "_socket_stream",
    )

    def __init__(self, pool_stream: Any, connection: Any) -> None:
        self._pool_stream = pool_stream
        self._h11: h11.Connection = connection._h11_state
        self._socket_stream = connection._network_stream._stream
        self._read_size: int = connection.READ_NUM_BYTES
        self._fd = _socket_fd(self._socket_stream)
        """The socket's descriptor, read directly once we parse the framing (-1: use the trio stream).

        Trio's ``receive_some`` tries the read first and waits on ``EAGAIN``. A
        paced stream has nothing waiting when we come back for more, so that
        try fails on almost every event: we wait first (``wait_readable`` is
        the checkpoint), unless the last read filled the buffer. That saves a
        failed system call, an exception and five Python frames per read
        (~10 of ~56 µs per event at 1,000 paced streams).
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

    def __aiter__(self) -> _H11Body:
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
                return bytes(event.data)  # type: ignore[union-attr]
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
            return await self._socket_stream.receive_some(self._read_size)  # type: ignore[no-any-return]
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
        if not self._closed:
            self._closed = True
            await self._pool_stream.aclose()


class _Turn:
    """One call's turn at the start-up CPU (``max_starting``), given back while it waits on the network."""

    __slots__ = ("held", "limiter")

    def __init__(self, limiter: trio.CapacityLimiter) -> None:
        self.limiter = limiter
        self.held = False

    async def take(self) -> None:
        await self.limiter.acquire_on_behalf_of(self)
        self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.limiter.release_on_behalf_of(self)


#: The turn of the call this task is starting, for ``_trace``.
_TURN: contextvars.ContextVar[_Turn | None] = contextvars.ContextVar("sluiceway_anthropic_turn", default=None)

# httpcore trace events: the turn is given back as a network wait starts (connecting, TLS, a
# proxy's set-up, sending the body, then waiting for the response head) and taken again when the
# request's head is about to be sent on the connection (only after connecting: a connection from
# the pool is used with the turn still held). Taking it there rather than as the connect
# completes keeps a cancellation during the wait inside httpcore's request handling, which
# closes the new connection; the new socket would otherwise be dropped unclosed. Not after the
# body: the response head may arrive with deltas behind it, which must not wait for a turn
# (measured: retaking it there took the start-up p99 lag from ~45 to ~900 ms).
_GIVE_BACK: Final = frozenset(
    {
        "connection.connect_tcp.started",
        "connection.connect_unix_socket.started",
        "connection.start_tls.started",
        "proxy.start_tls.started",
        "socks.connect_tcp.started",
        "socks.setup_socks5_connection.started",
        "socks.start_tls.started",
        "http11.send_request_body.started",
        "http11.receive_response_headers.started",
        "http2.send_request_body.started",
        "http2.receive_response_headers.started",
    }
)
_TAKE_AGAIN: Final = frozenset({"http11.send_request_headers.started", "http2.send_request_headers.started"})


async def _trace(name: str, info: dict[str, Any]) -> None:
    """httpcore's ``trace`` extension: give the start-up turn back while waiting on the network."""
    turn = _TURN.get()
    if turn is None:
        return
    if name in _GIVE_BACK:
        turn.give_back()
    elif name in _TAKE_AGAIN and not turn.held:
        await turn.take()


async def _install_trace(request: httpx2.Request) -> None:
    """httpx request hook: every request of the provider's clients gets ``_trace``."""
    request.extensions["trace"] = _trace


def _socket_fd(stream: Any) -> int:
    """The file descriptor under a trio ``SocketStream``, or -1 (another kind of stream: TLS, say)."""
    if type(stream) is not trio.SocketStream:
        return -1
    try:
        return stream.socket.fileno()
    except (AttributeError, OSError):
        return -1


def _at_chunk_boundary(state: h11.Connection) -> bool:
    """True when h11 reads a chunked body, between chunks, with nothing buffered."""
    reader = getattr(state, "_reader", None)
    buffer = getattr(state, "_receive_buffer", None)
    return (
        type(reader).__name__ == "ChunkedReader"
        and state.their_state is h11.SEND_BODY
        and getattr(reader, "_bytes_in_chunk", None) == 0
        and getattr(reader, "_bytes_to_discard", None) == b""
        and getattr(reader, "_reading_trailer", None) is False
        and buffer is not None
        and len(buffer) == 0
    )


def _h11_body(pool_stream: Any) -> _H11Body | None:
    """A ``_H11Body`` for httpcore's pool stream over a trio HTTP/1.1 connection, if it is one."""
    stream = getattr(pool_stream, "_stream", None)
    connection = getattr(stream, "_connection", None)
    if type(stream).__name__ != "HTTP11ConnectionByteStream" or connection is None:
        return None
    state = getattr(connection, "_h11_state", None)
    network = getattr(connection, "_network_stream", None)
    if not isinstance(state, h11.Connection) or not isinstance(getattr(network, "_stream", None), trio.abc.Stream):
        return None
    if not isinstance(getattr(connection, "READ_NUM_BYTES", None), int):
        return None
    return _H11Body(pool_stream, connection)


def _open_body(response: httpx2.Response) -> Any:
    """Return an async iterator of the response body's bytes, which we close.

    We read httpcore's connection directly (``_H11Body``), else iterate its
    pool stream: that skips four layers of async generators, and httpx2's
    ``AsyncResponseStream`` abandons the innermost one unexhausted when closed
    early, which trio reports as a ResourceWarning. A compressed body, or a
    layout we do not know, goes through ``aiter_bytes``.
    """
    if response.headers.get("content-encoding", "identity").lower() in ("identity", ""):
        body: Any = response.stream
        for _ in range(8):
            if body is None:
                break
            if hasattr(body, "_pool_request"):
                return _h11_body(body) or body.__aiter__()
            body = next(
                (
                    getattr(body, attr)
                    for attr in ("_stream", "_async_body", "_httpcore_stream")
                    if hasattr(body, attr)
                ),
                None,
            )
    return response.aiter_bytes()


def _usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=raw.get("input_tokens") or 0,
        output_tokens=raw.get("output_tokens") or 0,
        cache_creation_input_tokens=raw.get("cache_creation_input_tokens") or 0,
        cache_read_input_tokens=raw.get("cache_read_input_tokens") or 0,
    )


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    for key, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(key)
        if value is not None:
            try:
                return max(float(value) / scale, 0.0)
            except ValueError:
                continue  # an HTTP date: not worth guessing the clock skew
    return None


# mid-stream error event type -> our error class
_EVENT_ERRORS: Final[dict[str, type[ProviderError]]] = {
    "overloaded_error": OverloadedError,
    "rate_limit_error": RateLimitedError,
    "api_error": StreamInterruptedError,
    "timeout_error": StreamInterruptedError,
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
}


def map_error(exc: BaseException, step: str | None) -> ProviderError:
    """Return the ``ProviderError`` for an SDK or transport error; raise it ``from exc``.

    - error event mid-stream (``APIStatusError`` with status 200): by its type,
      ``overloaded_error`` -> ``OverloadedError``, ``rate_limit_error`` ->
      ``RateLimitedError``, ``api_error``/``timeout_error`` ->
      ``StreamInterruptedError``, others -> ``ProviderError``;
    - HTTP 401/403 -> ``AuthenticationError`` (the key was rejected); 429 ->
      ``RateLimitedError``, 529 -> ``OverloadedError``, both with ``retry_after``
      from the ``retry-after`` header; other statuses -> ``ProviderError``;
    - timeouts -> ``ProviderTimeoutError``; dropped or refused connections ->
      ``StreamInterruptedError``; anything else -> ``ProviderError``.
    """
    if isinstance(exc, ProviderError):
        return exc.with_step(step) if step else exc
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        kind = getattr(exc, "type", None)
        detail = getattr(exc, "api_message", None) or exc.message
        retry_after = _retry_after(exc.response.headers) if status != 200 else None
        if status == 200:
            cls = _EVENT_ERRORS.get(kind or "", ProviderError)
            return cls(f"the API sent an error event mid-stream: {kind}: {detail}", step=step)
        if status in (401, 403):
            return AuthenticationError(
                f"the API key was rejected (HTTP {status}: {detail})", step=step
            )
        if status == 429:
            return RateLimitedError(
                f"rate limited (HTTP 429: {detail})", step=step, retry_after=retry_after
            )
        if status == 529 or kind == "overloaded_error":
            return OverloadedError(
                f"the API is overloaded (HTTP {status}: {detail})",
                step=step,
                retry_after=retry_after,
            )
        if status >= 500:
            return ProviderError(
                f"server error (HTTP {status}: {detail})", step=step, retry_after=retry_after
            )
        return ProviderError(f"the API refused the request (HTTP {status}: {detail})", step=step)
    if isinstance(
        exc,
        (
            anthropic.APITimeoutError,
            httpx2.TimeoutException,
            httpcore2.TimeoutException,
            TimeoutError,
        ),
    ):
        return ProviderTimeoutError(f"the API timed out: {exc}", step=step)
    if isinstance(exc, anthropic.APIConnectionError):
        return StreamInterruptedError(f"could not reach the API: {exc}", step=step)
    if isinstance(
        exc,
        (
            httpx2.RemoteProtocolError,
            httpx2.NetworkError,
            httpx2.StreamError,
            httpcore2.NetworkError,
            httpcore2.ProtocolError,
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            trio.BrokenResourceError,
            ConnectionError,
        ),
    ):
        return StreamInterruptedError(f"the connection to the API was lost: {exc}", step=step)
    return ProviderError(f"unexpected error from the API client: {exc!r}", step=step)
