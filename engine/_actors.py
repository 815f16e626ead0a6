"""The handler actor: feeds one Handler from its tee outlet, then closes it.

See STYLE.md, "The actor pattern". A handler gets every event in order, in
batches of what is already waiting (never waiting to fill a batch), through
``handle_batch`` when it has one, else ``handle`` per event. Its ``aclose``
runs exactly once, shielded and bounded, whatever happens.

A handler with a synchronous ``handle_nowait(event)`` gets events through it
while its actor is parked with nothing waiting: the step's task calls it as it
sends, so the event skips a task switch and a scheduler pass, and order holds
(everything sent before was already handled). ``handle_nowait`` raising
``trio.WouldBlock`` hands that event to the actor instead (``handle_batch`` or
``handle``, awaited); raising anything else is a handler error, as from
``handle``. The actor keeps the lifecycle: ``aclose``, cancellation, errors.

A ``ChannelRelay`` (the handler of a ``coalesce`` channel consumer) forwards
into a caller's channel; a channel send is atomic under cancellation, so an
event whose forwarding was cancelled was not forwarded at all: it is still in
flight, not half handled.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Final, Literal

import trio

from sluiceway._errors import HandlerError

from ._channel import DirectError, EventReceiver
from ._events import TERMINAL_EVENTS, Cancelled, Done, Event, StepStarted
from ._protocols import Handler
from ._tee import Outlet

__all__ = (
    "HANDLER_CLOSE_TIMEOUT",
    "HANDLER_TIMEOUT",
    "TERMINAL_DELIVERY_TIMEOUT",
    "ChannelRelay",
    "HandlerWarning",
    "direct_handle",
    "handler_actor",
)

#: Seconds a handler's ``aclose`` may take (shielded) before it is abandoned.
HANDLER_CLOSE_TIMEOUT: Final = 5.0
#: Seconds one ``handle`` / ``handle_batch`` call may take before it counts as the handler's failure
#: (a stall: a handler that never returns must not hang the run); ``handler_timeout`` overrides it.
HANDLER_TIMEOUT: Final = 30.0
#: Seconds, after a cancellation, to get the terminal event through (shielded).
TERMINAL_DELIVERY_TIMEOUT: Final = 2.0

HandlerErrorPolicy = Literal["isolate", "fail"]


class HandlerWarning(UserWarning):
    """A stream handler failed and was isolated: it gets no more events; the run goes on."""


class ChannelRelay:
    """A handler that forwards each event to a caller's channel (for ``coalesce`` channel consumers).

    ``handler_actor`` feeds it one event at a time: a send cancelled while the
    caller's channel is full sent nothing (trio channel operations are atomic
    under cancellation), so after a cancellation the events not yet forwarded
    count as in flight, and the caller still gets the terminal event.
    """

    def __init__(self, send_channel: trio.MemorySendChannel[Event]) -> None:
        self.send_channel = send_channel

    async def handle(self, event: Event) -> None:
        try:
            await self.send_channel.send(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the reader hung up: like a block channel consumer, it is skipped

    async def aclose(self) -> None:
        self.send_channel.close()


async def handler_actor(
    receive_events: EventReceiver[Event],
    handler: Handler,
    outlet: Outlet,
    *,
    name: str,
    on_error: HandlerErrorPolicy = "isolate",
    fail: Callable[[HandlerError], None],
    handler_timeout: float | None = HANDLER_TIMEOUT,
) -> None:
    """Feed *handler* from *receive_events* until end-of-stream; always close it.

    Batches only what is already waiting (``receive_batch``), plus the outlet's
    pending merged delta once the channel is empty. A handler error under
    ``isolate`` warns once (``HandlerWarning``) and stops feeding the handler;
    its channel is closed so the producer skips it and never blocks on it.
    Under ``fail`` it calls *fail* with a ``HandlerError`` (the cause chained),
    which fails the step. A ``handle`` / ``handle_batch`` call that takes more
    than *handler_timeout* seconds (``None``: no bound) is cancelled and counts as such
    an error (a ``ChannelRelay``'s sends are not bounded: its reader is the
    caller's). Never raises except ``Cancelled``.

    Closes *receive_events*, and *handler* (``aclose``, exactly once, shielded,
    bounded by ``HANDLER_CLOSE_TIMEOUT``: then abandoned). Cancelled: waits (shielded, bounded
    by ``TERMINAL_DELIVERY_TIMEOUT``) for the step's terminal event, dropping
    the events in flight before it (but a composite step's sub-steps'
    ``StepStarted`` and terminals, given at most half the bound), hands the
    terminal to the handler, closes it and re-raises. A ``ChannelRelay`` is fed
    one event at a time, and the events it had not forwarded when cancelled
    (the one whose send was cancelled included) count as in flight.
    """
    healthy = True

    def failed(exc: Exception, what: str) -> None:
        nonlocal healthy
        if not healthy:
            return  # reported once: its aclose failing after its handle did adds nothing
        healthy = False
        if isinstance(exc, _Stalled):
            error = HandlerError(f"{what} {exc}", handler=name)
        else:
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

    held = _Held(atomic=isinstance(handler, ChannelRelay))  # the batch the handler is working on
    try:
        with receive_events:
            try:
                await _feed(receive_events, handler, outlet, failed, held, None if held.atomic else handler_timeout)
            except trio.Cancelled:
                with trio.move_on_after(TERMINAL_DELIVERY_TIMEOUT, shield=True):
                    first, last = await _after_cancel(receive_events, held)
                    try:
                        if first and healthy:  # sub-steps' events: never at the cost of the step's terminal
                            with trio.move_on_after(TERMINAL_DELIVERY_TIMEOUT / 2):
                                await _deliver(handler, first)
                        if last and healthy:
                            await _deliver(handler, last)
                    except Exception as exc:
                        failed(exc, "handle")
                raise
    finally:
        with trio.move_on_after(HANDLER_CLOSE_TIMEOUT, shield=True):
            try:
                await handler.aclose()
            except Exception as exc:
                failed(exc, "aclose")


class _Stalled(Exception):
    """A handler call that did not return within its bound (reported as a ``HandlerError``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"did not return within {seconds:g} s")


async def _feed(
    receive_events: EventReceiver[Event],
    handler: Handler,
    outlet: Outlet,
    failed: Callable[[Exception, str], None],
    held: _Held,
    bound_seconds: float | None,
) -> None:
    handle_batch = None if held.atomic else getattr(handler, "handle_batch", None)
    handle = handler.handle
    handle_nowait = direct_handle(handler)  # (a ChannelRelay has none: its sends may wait)
    receive_batch = receive_events.receive_batch
    waiting = receive_events.waiting
    while True:
        # what is waiting (at least one event), then the outlet's pending merged delta;
        # waits only when nothing is waiting (and meanwhile, handle_nowait takes events
        # in the sender's task: nothing sent before them is waiting or being handled)
        if outlet.pending is not None and not waiting():
            pending = outlet.take_pending()
            assert pending is not None  # outlet.pending was set
            batch = [pending]
        else:
            try:
                batch = await receive_batch(handle_nowait)
            except trio.EndOfChannel:
                return
            except DirectError as exc:
                failed(exc.error, "handle_nowait")
                return  # as for handle: the channel closes, the producer skips this handler
            if (pending := outlet.take_pending()) is not None:
                batch.append(pending)
        if len(batch) > outlet.high_water:  # the batch is what was waiting (+ a blocked sender's)
            outlet.high_water = min(len(batch), max(outlet.buffer_size, 1))
        held.batch = batch
        held.busy = True
        what = "handle_batch" if handle_batch is not None else "handle"
        try:
            if bound_seconds is None:
                await _handle(batch, handle_batch, handle, held)
            else:
                with trio.move_on_after(bound_seconds) as bound:
                    await _handle(batch, handle_batch, handle, held, bound, bound_seconds)
                if bound.cancelled_caught:  # a stall: the handler's failure, as if it raised
                    failed(_Stalled(bound_seconds), what)
                    return
            held.busy = False
        except Exception as exc:
            failed(exc, what)
            return  # leaving closes the channel: the producer skips this handler from now on


async def _handle(
    batch: list[Event],
    handle_batch: Any,
    handle: Any,
    held: _Held,
    bound: trio.CancelScope | None = None,
    bound_seconds: float = 0.0,
) -> None:
    """Hand *batch* to the handler; with *bound*, each call gets *bound_seconds* from its start."""
    if handle_batch is not None:
        held.next = len(batch)  # all handed over at once
        await handle_batch(batch)
    elif held.atomic:  # cancelled in handle: that event was not handled at all
        for i, event in enumerate(batch):
            held.next = i
            await handle(event)
        held.next = len(batch)
    else:
        for i, event in enumerate(batch):
            held.next = i + 1
            if bound is not None and i:
                bound.deadline = trio.current_time() + bound_seconds
            await handle(event)


def direct_handle(handler: Any) -> Callable[[Event], None] | None:
    """The handler's ``handle_nowait``, or None when it has none or it would bypass an override.

    A subclass that overrides ``handle`` or ``handle_batch`` (say, to add an
    ``await``) below the class that defines ``handle_nowait`` would have its
    override skipped by direct calls: such a handler gets none. Instance
    attributes count as the most derived level.
    """
    nowait = getattr(handler, "handle_nowait", None)
    if nowait is None:
        return None
    own = getattr(handler, "__dict__", {})
    if "handle_nowait" in own:
        return nowait
    if "handle" in own or "handle_batch" in own:
        return None
    mro = type(handler).__mro__

    def level(name: str) -> int:
        return next((i for i, cls in enumerate(mro) if name in cls.__dict__), len(mro))

    if min(level("handle"), level("handle_batch")) < level("handle_nowait"):
        return None
    return nowait


class _Held:
    """The batch a handler is working on, and how much of it was handed over."""

    __slots__ = ("atomic", "batch", "busy", "next")

    def __init__(self, *, atomic: bool = False) -> None:
        self.atomic = atomic
        """True when a cancelled ``handle`` handled nothing (a ``ChannelRelay``): nothing is half handled."""
        self.batch: list[Event] = []
        self.next = 0
        """Index of the first event of ``batch`` not yet handed to the handler."""
        self.busy = False
        """True while the handler works on ``batch``."""


async def _after_cancel(
    receive_events: EventReceiver[Event], held: _Held
) -> tuple[list[Event], list[Event]]:
    """After a cancellation: what the handler still gets, ending with the step's terminal event.

    Returns ``(first, last)``: *first* the sub-steps' events kept (delivered with
    at most half the bound, so that a slow handler still gets the step's own
    terminal), *last* the rest, ending with the step's terminal event.

    Reads to the end of the stream (the events in flight: at most the buffer, and
    the terminal). When the terminal is ``Cancelled``, the events in flight are
    dropped (cancellation is not a drain). When the step finished (``Done`` or
    ``Failed``) and nothing was lost, they are all delivered. When part of a
    batch was lost, a ``Done`` becomes a ``Cancelled`` carrying its response as
    ``partial``: the handler's view is incomplete, so it must not read as a
    complete success.

    A composite step's stream (``stream_group``) also holds its sub-steps'
    events: whenever events are dropped, each sub-step's ``StepStarted`` and
    terminal event in flight are still delivered, in order, before the step's
    own terminal, so every sub-step the handler saw start also ends; a
    sub-step's ``Done`` whose other events were dropped becomes ``Cancelled``
    with its response as ``partial``, as above.
    """
    # interrupted inside the handler: the event it was on may be half handled (not a relay's: its send
    # is atomic, so what it had not forwarded is merely still in flight)
    lost = held.busy and not held.atomic
    unseen = held.batch[held.next :] if held.busy else []
    rest: list[Event] = [*unseen, *[event async for event in receive_events]]
    if not rest or not isinstance(rest[-1], TERMINAL_EVENTS):
        return [], []  # (when the event it was on is its terminal, it already has it)
    terminal = rest[-1]
    if not lost and not isinstance(terminal, Cancelled):
        return [], rest
    dropped: set[str] = set()  # steps some of whose events the handler will not see
    if lost and held.next:
        dropped.add(held.batch[held.next - 1].step)
    ended = {event.step for event in rest if isinstance(event, TERMINAL_EVENTS)}
    kept: list[Event] = []
    for event in rest[:-1]:
        if event.step == terminal.step:
            continue  # the step's own events in flight: dropped
        if isinstance(event, TERMINAL_EVENTS):
            kept.append(_as_seen(event, event.step in dropped))
        elif isinstance(event, StepStarted) and event.step in ended:
            kept.append(event)
        else:
            dropped.add(event.step)
    if isinstance(terminal, Done) and lost:
        terminal = _as_seen(terminal, True)
    return kept, [terminal]


def _as_seen(terminal: Event, incomplete: bool) -> Event:
    """*terminal*, or for a ``Done`` whose step lost events, ``Done.as_cancelled()``."""
    if incomplete and isinstance(terminal, Done):
        return terminal.as_cancelled()
    return terminal


async def _deliver(handler: Handler, events: list[Event]) -> None:
    handle_batch = getattr(handler, "handle_batch", None)
    if handle_batch is not None:
        await handle_batch(events)
    else:
        for event in events:
            await handler.handle(event)
