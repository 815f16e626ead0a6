"""Consumer wiring: each consumer of a step gets its tee outlet, and a handler actor where it needs one.

``stream_step`` and ``stream_group`` both start here. Handlers get a bounded
channel drained by a handler actor; ``coalesce`` channel consumers get a relay
actor (which closes their channel); ``block`` channel consumers are sent to
directly. The run's event stream, when there is one, gets its own clone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import attrs
import trio

from ._actors import HANDLER_CLOSE_TIMEOUT, ChannelRelay
from ._channel import EventReceiver, EventSender, open_event_channel
from ._events import Event
from ._protocols import Handler, HandlerPolicy
from ._run import RunContext
from ._tee import DEFAULT_BUFFER_SIZE, Outlet

__all__ = ("ChannelConsumer", "Consumer", "HandlerActorArgs", "HandlerConsumer", "Wiring", "wire_consumers")


@attrs.frozen
class HandlerConsumer:
    """A handler fed by its own actor, through its own bounded channel."""

    handler: Handler
    """The ``Handler`` (``handle``, optional ``handle_batch``, ``aclose``)."""
    name: str = ""
    """The handler's name as configured, for warnings and ``HandlerError.handler``."""
    policy: HandlerPolicy = "block"
    """``block`` (lossless, backpressure) or ``coalesce`` (merge deltas when it lags)."""
    buffer_size: int = DEFAULT_BUFFER_SIZE
    """The channel's buffer (``stream_buffer_size``)."""


@attrs.frozen
class ChannelConsumer:
    """A channel the caller reads (passthrough input of a later step, or similar)."""

    send_channel: trio.MemorySendChannel[Event]
    """The send side; ``stream_step`` closes it after the terminal event."""
    policy: HandlerPolicy = "block"
    """``block``: events go straight into *send_channel*. ``coalesce``: through a relay actor
    with its own channel of ``buffer_size``, whose deltas merge while the reader lags."""
    buffer_size: int = DEFAULT_BUFFER_SIZE
    """For ``coalesce``: the relay's buffer."""
    on_cancel: Callable[[Event], None] | None = None
    """``block`` only: when the step was cancelled before this consumer had its terminal event,
    called with that terminal instead of sending it (which could wait on a full channel): the
    reader takes it over, delivers it after the step's events already in the channel, and may
    drop those (cancellation is not a drain)."""


Consumer = HandlerConsumer | ChannelConsumer


class HandlerActorArgs(NamedTuple):
    """The arguments one ``handler_actor`` is started with."""

    receive: EventReceiver[Event]
    """Its channel."""
    handler: Handler
    """The handler it feeds (a ``ChannelRelay`` for a ``coalesce`` channel consumer)."""
    outlet: Outlet
    """Its tee outlet (for the pending merged delta and the high-water mark)."""
    name: str
    """The handler's name, for warnings and errors."""


@attrs.define
class Wiring:
    """A step's consumers, wired: the outlets to send to, the actors to start, the channels to close."""

    outlets: list[Outlet]
    """One per consumer; those drained by our own actors first (after a cancellation
    they get the terminal event before any wait on a caller's channel, whose reader
    may be gone)."""
    actors: list[HandlerActorArgs]
    """The handler actors to start (handlers, and relays of ``coalesce`` channel consumers)."""
    given: list[trio.MemorySendChannel[Event]]
    """The caller-side channels to close at the end (``block`` channel consumers, the run's clone)."""
    run_outlet: Outlet | None = None
    """The run's event stream (policy ``block``), when the run has one."""

    def close(self) -> None:
        """Close every channel into the consumers (they see ``EndOfChannel``). Idempotent."""
        for outlet in self.outlets:
            outlet.send.close()
        for channel in self.given:
            channel.close()


async def wire_consumers(consumers: Sequence[Consumer], run: RunContext) -> Wiring:
    """Give each consumer its outlet; the caller starts the actors and closes the channels (``Wiring.close``).

    If building fails (or is cancelled), everything made so far is closed, the
    handlers included (shielded, bounded by ``HANDLER_CLOSE_TIMEOUT``), and the
    error propagates.
    """
    wiring = Wiring([], [], [])
    try:
        for consumer in consumers:
            wiring.outlets.append(_wire(consumer, wiring))
        wiring.outlets.sort(key=lambda o: not o.actor)
        if run.events is not None:
            try:
                events = run.events.clone()
            except trio.ClosedResourceError:
                pass  # the run's stream was already closed: nobody to tell
            else:
                wiring.given.append(events)
                wiring.run_outlet = Outlet(events, name="run events", buffer_size=_size(events))
    except BaseException:
        with trio.move_on_after(HANDLER_CLOSE_TIMEOUT, shield=True):
            await _abandon(consumers, wiring)
        raise
    return wiring


def _wire(consumer: Consumer, wiring: Wiring) -> Outlet:
    send: EventSender[Event]
    receive: EventReceiver[Event]
    if isinstance(consumer, HandlerConsumer):
        send, receive = open_event_channel(consumer.buffer_size)
        outlet = Outlet(
            send, coalesce=consumer.policy == "coalesce", name=consumer.name, buffer_size=consumer.buffer_size
        )
        outlet.actor = True
        wiring.actors.append(HandlerActorArgs(receive, consumer.handler, outlet, consumer.name))
    elif consumer.policy == "coalesce":  # the relay actor closes the caller's channel
        send, receive = open_event_channel(consumer.buffer_size)
        outlet = Outlet(send, coalesce=True, name="channel", buffer_size=consumer.buffer_size)
        outlet.actor = True
        wiring.actors.append(HandlerActorArgs(receive, ChannelRelay(consumer.send_channel), outlet, "channel"))
    else:
        wiring.given.append(consumer.send_channel)
        outlet = Outlet(consumer.send_channel, name="channel", buffer_size=_size(consumer.send_channel))
        outlet.on_cancel = consumer.on_cancel
    return outlet


def _size(channel: trio.MemorySendChannel[Event]) -> int:
    size = channel.statistics().max_buffer_size
    return int(size) if math.isfinite(size) else 0


async def _abandon(consumers: Sequence[Consumer], wiring: Wiring) -> None:
    """Setup failed: close what we were given, handlers included (call it shielded, bounded)."""
    wiring.close()
    for consumer in consumers:
        if isinstance(consumer, ChannelConsumer):
            consumer.send_channel.close()
    for consumer in consumers:
        if isinstance(consumer, HandlerConsumer):
            try:
                await consumer.handler.aclose()
            except Exception:
                pass
