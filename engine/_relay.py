"""A step streamed elsewhere, delivered here: ``relay_step``.

A step whose model calls ran in another process (a Ray actor: see
``sluiceway._ray``) arrives as a stream of events already enveloped there.
``relay_step`` gives them to the step's consumers (and the run's event stream)
as ``stream_step`` would have, with the same terminal delivery (``Delivery``):
exactly one terminal event per consumer, last, also when the relay is
cancelled before the remote step ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import trio

from ._actors import HANDLER_TIMEOUT
from ._events import TERMINAL_EVENTS, Cancelled, Event, Failed
from ._run import RunContext
from ._tee import Tee
from ._terminal import Delivery
from ._wiring import Consumer, wire_consumers

__all__ = ("StepLostError", "relay_step")


class StepLostError(Exception):
    """The stream of a remote step ended without its terminal event."""


async def relay_step(
    *,
    run: RunContext,
    path: str,
    consumers: Sequence[Consumer],
    receive_events: trio.MemoryReceiveChannel[Sequence[Event]],
    on_handler_error: Literal["isolate", "fail"] = "isolate",
    handler_timeout: float | None = HANDLER_TIMEOUT,
) -> Event:
    """Deliver step *path*'s events from *receive_events* to *consumers*; return its terminal event.

    *receive_events* carries the events in runs (lists, in order: one wake-up of
    the relay per run, not per event). The events come enveloped (``run_id``, ``step``, ``attempt``, ``seq``, ``at``)
    by whoever made them; the first terminal event (``Done``, ``Failed`` or
    ``Cancelled``) ends the step and is delivered last. A stream that ends
    without one ends the step with ``Failed(StepLostError)``; a handler that
    fails under ``fail`` ends it with ``Failed`` (what the remote step still
    sends is then not read).

    Closes *receive_events* and every consumer channel and handler, on success,
    error and cancellation. Blocks while a ``block`` consumer is full (the
    backpressure reaches whoever fills *receive_events*). Cancelled: every
    consumer still gets one terminal event (``Cancelled``, numbered after the
    last event relayed), shielded and bounded; then the cancellation propagates.
    """
    wiring = await wire_consumers(consumers, run)
    tee = Tee([*wiring.outlets, *([wiring.run_outlet] if wiring.run_outlet is not None else [])])
    delivery = Delivery(wiring, tee, on_handler_error, handler_timeout)
    last_seq = 0
    last_attempt = 1

    def envelope() -> dict[str, object]:
        return {"run_id": run.run_id, "step": path, "attempt": last_attempt, "seq": last_seq + 1, "at": run.now()}

    async def produce() -> Event:
        nonlocal last_seq, last_attempt
        terminal: Event | None = None
        with receive_events, delivery.produce_scope:
            while terminal is None:
                try:
                    events = receive_events.receive_nowait()  # what is waiting: no checkpoint
                except trio.WouldBlock:
                    try:
                        events = await receive_events.receive()
                    except trio.EndOfChannel:
                        break
                except trio.EndOfChannel:
                    break
                for event in events:
                    if isinstance(event, TERMINAL_EVENTS):
                        terminal = event
                        break
                    start = tee.offer(event)
                    if start >= 0:
                        await tee.send_from(event, start)
                    last_seq, last_attempt = event.seq, event.attempt
        if delivery.handler_failure is not None:
            error: Exception = delivery.handler_failure
            return Failed(**envelope(), error=error, message=str(error))  # type: ignore[arg-type]
        if terminal is None:
            error = StepLostError(f"{path}: the step's events ended without a terminal event")
            return Failed(**envelope(), error=error, message=str(error))  # type: ignore[arg-type]
        return terminal

    async def cancelled() -> Event:
        return Cancelled(**envelope())  # type: ignore[arg-type]

    return await delivery.run(produce, cancelled)
