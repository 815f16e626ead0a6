"""The start-up limiter: at most so many calls run the CPU-bound part of their start at once.

Building a request and sending its head is CPU work (the SDK, httpx, httpcore
and h11 each take a share); without a limit, a burst of starts runs in the
same scheduler passes as the streams already flowing, and their deltas wait.
A call holds a turn (``StartupTurn``) of the provider's ``trio.CapacityLimiter``
while it does that work, and gives it back while it waits on the network.

The waits are seen through httpcore's ``trace`` request extension: every
request of the provider's clients gets ``trace_turn`` (``install_trace`` is the
httpx request hook that adds it), and ``trace_turn`` finds the turn of the call
its task is starting in a context variable, ``CURRENT_TURN``. A request made
outside a turn (another task, a client given to the provider) is left alone.
"""

from __future__ import annotations

import contextvars
from types import TracebackType
from typing import Any, Final

import httpx2
import trio

__all__ = ("CURRENT_TURN", "StartupTurn", "install_trace", "trace_turn")


class StartupTurn:
    """One call's turn at the start-up CPU, given back while it waits on the network.

    ``async with StartupTurn(limiter):`` around the SDK call that sends the
    request: entering waits for a turn (a checkpoint; cancellable), and makes
    it the task's ``CURRENT_TURN``; leaving gives it back for good.
    """

    __slots__ = ("_reset", "held", "limiter")

    def __init__(self, limiter: trio.CapacityLimiter) -> None:
        self.limiter = limiter
        self.held = False
        """True while the turn is taken."""
        self._reset: contextvars.Token[StartupTurn | None] | None = None

    async def take(self) -> None:
        """Wait for a turn and take it."""
        await self.limiter.acquire_on_behalf_of(self)
        self.held = True

    def give_back(self) -> None:
        """Give the turn back, if it is held."""
        if self.held:
            self.held = False
            self.limiter.release_on_behalf_of(self)

    async def __aenter__(self) -> StartupTurn:
        await self.take()
        self._reset = CURRENT_TURN.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reset is not None:
            CURRENT_TURN.reset(self._reset)
            self._reset = None
        self.give_back()


#: The turn of the call this task is starting, for ``trace_turn``.
CURRENT_TURN: contextvars.ContextVar[StartupTurn | None] = contextvars.ContextVar(
    "sluiceway_anthropic_turn", default=None
)

# httpcore trace events: the turn is given back as a network wait starts (connecting, TLS, a
# proxy's set-up, sending the body, then waiting for the response head) and taken again when the
# request's head is about to be sent on the connection (only after connecting: a connection from
# the pool is used with the turn still held). Taking it there rather than as the connect
# completes keeps a cancellation during the wait inside httpcore's request handling, which
# closes the new connection; the new socket would otherwise be dropped unclosed. Not after the
# body: the response head may arrive with deltas behind it, which must not wait for a turn.
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


async def trace_turn(name: str, info: dict[str, Any]) -> None:
    """httpcore's ``trace`` extension: give the start-up turn back while waiting on the network."""
    turn = CURRENT_TURN.get()
    if turn is None:
        return
    if name in _GIVE_BACK:
        turn.give_back()
    elif name in _TAKE_AGAIN and not turn.held:
        await turn.take()


async def install_trace(request: httpx2.Request) -> None:
    """httpx request hook: every request of the provider's clients gets ``trace_turn``."""
    request.extensions["trace"] = trace_turn
