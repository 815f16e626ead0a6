"""The live provider: Anthropic's Messages API through the official SDK.

The SDK builds the request, authenticates, and turns HTTP status errors into
its exceptions; we read the streaming response's bytes ourselves, because the
SDK's decoder swallows ``ping`` events (so a stalled stream would look alive)
and is slower. The parts, one module each:

- ``providers._startup``: the start-up limiter (``max_starting``);
- ``providers._fastbody``: the response body, read on the HTTP fast path when
  it engages (``open_fast_body``), else through httpcore's own iterator;
- ``providers._sse``: bytes to SSE ``(event, data)`` pairs;
- ``providers._sse_events``: SSE pairs to provider events;
- ``providers._anthropic_errors``: every SDK and transport error to a
  ``ProviderError``, in one place (``map_error``).

This module holds the provider (its SDK clients, its statistics) and the
call: the request, the deadlines, and the reads that feed the parser.

Deadlines run on trio's clock: ``request.first_token_timeout`` from the
request until the first delta (text, thinking or tool input), then
``request.idle_timeout`` between events that are not ``ping`` (without a
first-token timeout, the idle one applies from the request on).
"""

from __future__ import annotations

import collections
import inspect
import math
import os
from types import TracebackType
from typing import Any, Final

import anthropic
import attrs
import httpx2
import trio
from sluiceway.engine._protocols import ModelRequest
from sluiceway.engine._provider_events import ProviderEvent

from sluiceway._errors import (
    AuthenticationError,
    ProviderError,
    ProviderTimeoutError,
    StreamInterruptedError,
)

from ._anthropic_errors import map_error
from ._fastbody import FastBody, open_fast_body, open_plain_body
from ._sse import SSEParser
from ._sse_events import SSEEventConverter
from ._startup import StartupTurn, install_trace

__all__ = ("AnthropicProvider", "AnthropicStatistics")

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


@attrs.frozen
class AnthropicStatistics:
    """What an ``AnthropicProvider`` holds and has done (``AnthropicProvider.statistics()``)."""

    clients: int
    """SDK clients the provider made and has not closed (a client given to it is not counted)."""
    open_streams: int
    """Calls entered and not yet left."""
    fast_bodies: int
    """Streams whose response body was read on the HTTP fast path, since the provider was made."""
    slow_bodies: int
    """Streams whose response body went through the HTTP client's own iterators (a compressed
    body, HTTP/2, another transport, or the fast path not engaging), since the provider was made."""


class AnthropicProvider:
    """Streams calls to the Messages API with the official ``anthropic`` SDK.

    The provider makes its ``AsyncAnthropic`` clients itself (with the SDK's
    retries off: the engine retries) and ``aclose`` closes them. It makes one at
    the first call, and another whenever every client it has carries
    ``streams_per_client`` open streams: httpcore's connection pool scans all of
    its connections when a request starts and when a response closes, so the
    cost of a request grows with the streams one pool holds. A client given as
    ``client`` is used for every call.

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
            start at once: building the request and sending its head
            (``providers._startup``). A call gives its turn back while it
            connects (TCP, TLS), takes it again to send the request head, and
            gives it back for good once the body is being sent, so it waits
            for the response with no turn held, and against a remote API the
            limit does not cap a burst at so many starts per round trip.
            Without it, a burst of starts runs in the same scheduler passes as
            the streams already flowing, and their deltas wait (bench/README.md
            has the measurements). Waiting for a turn counts against the
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
        # for statistics(): calls entered and not left (any client), and how their bodies were read
        self._open_streams = 0
        self._fast_bodies = 0
        self._slow_bodies = 0

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
            http_client=anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [install_trace]}),
        )
        self._clients.append(client)
        self._open[id(client)] = 0
        return client

    def statistics(self) -> AnthropicStatistics:
        """Return what the provider holds and has done so far."""
        return AnthropicStatistics(
            clients=len(self._clients),
            open_streams=self._open_streams,
            fast_bodies=self._fast_bodies,
            slow_bodies=self._slow_bodies,
        )

    def _checkout(self, step: str | None) -> anthropic.AsyncAnthropic:
        """The client for a new stream (counted open until ``_checkin``)."""
        client = self.client(step)
        if self._owns_client:
            open_streams = self._open
            if open_streams[id(client)] >= self.streams_per_client:
                client = next(
                    (c for c in self._clients if open_streams[id(c)] < self.streams_per_client), None
                ) or self._new_client(step)
            open_streams[id(client)] += 1
        self._open_streams += 1
        return client

    def _checkin(self, client: anthropic.AsyncAnthropic) -> None:
        self._open_streams -= 1
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
        """The response body's chunks (a ``FastBody`` or httpcore's iterator), closed on leaving."""
        self._parser = SSEParser()
        self._converter = SSEEventConverter(self._step)
        self._ready: collections.deque[ProviderEvent] = collections.deque()
        self._deadline = math.inf
        self._error: ProviderError | None = None

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
            response = self._response = await self._send(client, params)
        except BaseException:
            self._checkin()  # __aexit__ will not run
            raise
        self._converter.request_id = response.headers.get("request-id")
        try:
            self._open_body(response)
        except Exception:
            # a FastPathWarning made an error, say: __aexit__ will not run, and the
            # response must not be left open
            self._checkin()
            self._response = None
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await response.aclose()
            raise
        return self

    async def _send(self, client: anthropic.AsyncAnthropic, params: dict[str, Any]) -> httpx2.Response:
        """Send the request and return the streamed response, its head read, within the deadline."""
        request = self._request
        try:
            with trio.move_on_at(self._deadline) as scope:
                starting = self._provider._starting
                if starting is None or not self._provider._owns_client:
                    sdk_stream = await client.messages.create(**params)
                else:  # wait our turn (within the first-token deadline)
                    async with StartupTurn(starting):
                        sdk_stream = await client.messages.create(**params)
        except Exception as exc:
            raise map_error(exc, self._step) from exc
        if scope.cancelled_caught:
            raise ProviderTimeoutError(
                f"no response from the API within {request.first_token_timeout or request.idle_timeout} s",
                step=self._step,
            )
        return sdk_stream.response

    def _open_body(self, response: httpx2.Response) -> None:
        """Open the body on the fast path when it engages, else the plain way; count which."""
        body = open_fast_body(response)
        if isinstance(body, FastBody):
            self._provider._fast_bodies += 1
            self._chunks = body
        else:
            self._provider._slow_bodies += 1
            self._chunks = open_plain_body(response)

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
            if self._converter.done or self._chunks is None:
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
            if self._converter.started or first is None:
                what = f"no progress from the API within the idle deadline ({self._request.idle_timeout} s)"
            else:
                what = f"no first token from the API within the first-token deadline ({first} s)"
            raise ProviderTimeoutError(what, step=self._step)
        return chunk

    def _take(self, chunk: bytes) -> None:
        """Convert a chunk's events into ``_ready``; a deadline moves on with progress."""
        converter = self._converter
        if not converter.convert(self._parser.feed(chunk), self._ready):
            return  # pings, comments or a partial event: not progress
        if converter.error is not None and self._error is None:
            self._error = self._error_event(converter.error)
        request = self._request
        if converter.started or request.first_token_timeout is None:
            idle = request.idle_timeout
            self._deadline = trio.current_time() + idle if idle is not None else math.inf

    def _error_event(self, payload: dict[str, Any]) -> ProviderError:
        """The error for an ``error`` event (raised once the events before it are delivered)."""
        # what the SDK raises for a mid-stream error event (status 200), then mapped
        assert self._response is not None
        exc = anthropic.APIStatusError(f"{payload}", response=self._response, body=payload)
        error = map_error(exc, self._step)
        error.__cause__ = exc
        return error
