"""Terminal delivery: a step's handler actors run beside its producer, and its terminal event reaches every consumer once.

One piece of code for ``stream_step`` and ``stream_group``. The producer
returns the step's terminal event (``Done`` or ``Failed``), which goes to each
outlet, in order. When a cancellation comes first, a ``Cancelled`` is made
instead; when it comes while the terminal is being delivered, that same event
goes on to the outlets that do not have it yet. Either way this delivery is
shielded and bounded by ``TERMINAL_DELIVERY_TIMEOUT``, and no outlet gets two
terminal events (a handler that lost events in flight reads a ``Done`` as
``Cancelled``: see ``handler_actor``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Literal

import trio

from sluiceway._errors import HandlerError

from ._actors import HANDLER_TIMEOUT, TERMINAL_DELIVERY_TIMEOUT, handler_actor
from ._events import Event, Response
from ._tee import Tee
from ._wiring import Wiring

__all__ = ("Delivery", "attach_partial", "terminal_response")


class Delivery:
    """Runs a step's handler actors and delivers its terminal event (``run``); records a failing handler.

    A handler that fails under ``on_handler_error="fail"`` (or whose warning is
    an error) is recorded in ``handler_failure`` and cancels ``produce_scope``:
    the producer runs inside that scope, then raises the failure so that the
    step ends with ``Failed``.
    """

    def __init__(
        self,
        wiring: Wiring,
        tee: Tee,
        on_handler_error: Literal["isolate", "fail"],
        handler_timeout: float | None = HANDLER_TIMEOUT,
    ) -> None:
        self.wiring = wiring
        self.tee = tee
        """Where the terminal event goes (every outlet, the run's stream included)."""
        self.on_handler_error: Literal["isolate", "fail"] = on_handler_error
        self.handler_timeout = handler_timeout
        """Seconds one handler call may take (``None``: no bound); see ``handler_actor``."""
        self.produce_scope = trio.CancelScope()
        """The producer's scope; cancelled when a handler fails the step."""
        self.handler_failure: HandlerError | None = None
        """The first handler failure that fails the step."""
        self.terminal: Event | None = None
        """The terminal event, once made."""

    def fail(self, error: HandlerError) -> None:
        """A handler failed the step: keep the first failure, stop the producer."""
        if self.handler_failure is None:
            self.handler_failure = error
        self.produce_scope.cancel()

    async def run(
        self,
        produce: Callable[[], Awaitable[Event]],
        cancelled: Callable[[], Awaitable[Event]],
        *,
        beside: Callable[[], Awaitable[None]] | None = None,
    ) -> Event:
        """Start the handler actors (and *beside*), await *produce* and deliver the terminal it returns.

        *produce* returns ``Done`` or ``Failed`` (it raises only when cancelled).
        After a cancellation (or any ``BaseException``) before the terminal was
        made, ``await cancelled()`` makes it; either way the terminal goes to
        the outlets that lack it, shielded, bounded by ``TERMINAL_DELIVERY_TIMEOUT``,
        and the cancellation propagates.

        Closes every consumer channel (``Wiring.close``) once the terminal is
        out, and returns when every actor has finished (after their handlers'
        ``aclose``). Blocks while a ``block`` consumer is full.
        """
        delivered: set[int] = set()  # the outlets that have the terminal event
        async with trio.open_nursery() as nursery:
            for receive, handler, outlet, name in self.wiring.actors:
                nursery.start_soon(
                    partial(
                        handler_actor, receive, handler, outlet, name=name, on_error=self.on_handler_error,
                        fail=self.fail, handler_timeout=self.handler_timeout,
                    )
                )
            if beside is not None:
                nursery.start_soon(beside)
            try:
                self.terminal = await produce()
                await self.tee.send_each(self.terminal, delivered)
            except BaseException:  # cancelled (a composite step's body raises it grouped): re-raised
                with trio.move_on_after(TERMINAL_DELIVERY_TIMEOUT, shield=True):
                    if self.terminal is None:
                        self.terminal = await cancelled()
                    for i, outlet in enumerate(self.tee.outlets):
                        if i not in delivered and outlet.on_cancel is not None:
                            outlet.on_cancel(self.terminal)  # its reader takes the terminal over: never waited on
                            delivered.add(i)
                    # also when cancelled while the terminal was being delivered: the rest get it; each
                    # outlet on its own, so that a full one (a composite step's fan-in behind a slow
                    # handler, a caller's channel) costs no other its terminal when the bound runs out
                    await self.tee.send_each_apart(self.terminal, delivered)
                raise
            finally:
                self.wiring.close()
        assert self.terminal is not None
        return self.terminal


def terminal_response(terminal: Event | None) -> Response | None:
    """The response a terminal event carries (``Done.response``, else ``partial``)."""
    return getattr(terminal, "partial", None) or getattr(terminal, "response", None)


def attach_partial(exc: BaseException, partial: Response | None) -> None:
    """Give the raised error the step's partial response (``exc.partial``), for the caller's files.

    An error that already carries one (an inner step's) keeps it.
    """
    if partial is not None and getattr(exc, "partial", None) is None:
        try:
            exc.partial = partial  # type: ignore[attr-defined]  # the partial response rides on any exception
        except AttributeError:  # an exception class with __slots__: nothing to attach to
            pass
