"""The handler actor: feeds one Handler from its tee outlet, then closes it.

See STYLE.md, "The actor pattern". A handler gets every event in order, in
batches of what is already waiting (never waiting to fill a batch), through
``handle_batch`` when it has one, else ``handle`` per event. Its ``aclose``
runs exactly once, shielded and bounded, whatever happens.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Final, Literal

import trio

from sluiceway._errors import HandlerError

from ._events import TERMINAL_EVENTS, Event
from ._tee import Outlet

__all__ = ("HANDLER_CLOSE_TIMEOUT", "TERMINAL_DELIVERY_TIMEOUT", "HandlerWarning", "handler_actor")

#: Seconds a handler's ``aclose`` may take (shielded) before it is abandoned.
HANDLER_CLOSE_TIMEOUT: Final = 5.0
#: Seconds, after a cancellation, to get the terminal event through (shielded).
TERMINAL_DELIVERY_TIMEOUT: Final = 2.0

HandlerErrorPolicy = Literal["isolate", "fail"]


class HandlerWarning(UserWarning):
    """A stream handler failed and was isolated: it gets no more events; the run goes on."""


async def handler_actor(
    receive_events: trio.MemoryReceiveChannel[Event],
    handler: Any,
    outlet: Outlet,
    *,
    name: str,
    on_error: HandlerErrorPolicy = "isolate",
    fail: Callable[[HandlerError], None],
) -> None:
    """Feed *handler* from *receive_events* until end-of-stream; always close it.

    Batches only what is already waiting (``receive_nowait``), plus the outlet's
    pending merged delta once the channel is empty. A handler error under
    ``isolate`` warns once (``HandlerWarning``) and stops feeding the handler;
    its channel is closed so the producer skips it and never blocks on it.
    Under ``fail`` it calls *fail* with a ``HandlerError`` (the cause chained),
    which fails the step. Never raises except ``Cancelled``.

    Closes *receive_events*, and *handler* (``aclose``, exactly once, shielded,
    bounded by ``HANDLER_CLOSE_TIMEOUT``). Cancelled: waits (shielded, bounded
    by ``TERMINAL_DELIVERY_TIMEOUT``) for the step's terminal event, dropping
    the events in flight before it, hands the terminal to the handler, closes
    it and re-raises.
    """
    healthy = True

    def failed(exc: Exception, what: str) -> None:
        nonlocal healthy
        healthy = False
        error = HandlerError(f"{what} raised {type(exc).__name__}: {exc}", handler=name)
        error.__cause__ = exc
        if on_error == "fail":
            fail(error)
            return
        try:
            warnings.warn(HandlerWarning(f"{error}; the handler is isolated, the run goes on"), stacklevel=1)
        except Exception as warn_exc:  # warnings are errors (-W error): fail the step instead
            fail(error)
            del warn_exc

    try:
        with receive_events:
            try:
                await _feed(receive_events, handler, outlet, failed)
            except trio.Cancelled:
                with trio.move_on_after(TERMINAL_DELIVERY_TIMEOUT, shield=True):
                    terminal = await _await_terminal(receive_events)
                    if terminal is not None and healthy:
                        try:
                            await handler.handle(terminal)
                        except Exception as exc:
                            failed(exc, "handle")
                raise
    finally:
        with trio.move_on_after(HANDLER_CLOSE_TIMEOUT, shield=True):
            try:
                await handler.aclose()
            except Exception as exc:
                failed(exc, "aclose")


async def _feed(
    receive_events: trio.MemoryReceiveChannel[Event],
    handler: Any,
    outlet: Outlet,
    failed: Callable[[Exception, str], None],
) -> None:
    handle_batch = getattr(handler, "handle_batch", None)
    handle = handler.handle
    receive_nowait = receive_events.receive_nowait
    while True:
        try:
            event = receive_nowait()
        except trio.WouldBlock:
            event = outlet.take_pending()
            if event is None:
                try:
                    event = await receive_events.receive()
                except trio.EndOfChannel:
                    return
        except trio.EndOfChannel:
            return
        batch = [event]
        while True:  # take what is already waiting, never wait to fill a batch
            try:
                batch.append(receive_nowait())
            except trio.WouldBlock:
                pending = outlet.take_pending()
                if pending is not None:
                    batch.append(pending)
                break
            except trio.EndOfChannel:
                break
        if len(batch) > outlet.high_water:  # the batch is what was waiting (+ a blocked sender's)
            outlet.high_water = min(len(batch), max(outlet.buffer_size, 1))
        try:
            if handle_batch is not None:
                await handle_batch(batch)
            else:
                for event in batch:
                    await handle(event)
        except Exception as exc:
            failed(exc, "handle_batch" if handle_batch is not None else "handle")
            return  # leaving closes the channel: the producer skips this handler from now on


async def _await_terminal(receive_events: trio.MemoryReceiveChannel[Event]) -> Event | None:
    """After a cancellation: drop events in flight until the terminal event (or the end)."""
    terminal = None
    async for event in receive_events:
        if isinstance(event, TERMINAL_EVENTS):
            terminal = event
    return terminal
