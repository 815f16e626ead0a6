"""The tee: one producer, N consumers, each with its own bounded channel and policy.

Policies (``HandlerPolicy``):

- ``block``: lossless. A full consumer channel blocks the producer, so the
  backpressure reaches the provider.
- ``coalesce``: when the consumer's channel is full, a delta is parked in the
  consumer's *pending* slot, and consecutive deltas of the same step, attempt,
  block index (and tool_use_id) are merged into it (their text concatenated).
  Any other event, or a delta that does not merge, first waits until the
  pending delta is in the channel: nothing but deltas is ever merged, and
  nothing is ever dropped. Memory per consumer: the channel plus one pending
  merged delta.

The consumer's actor takes the pending delta as soon as its channel is empty
(``Outlet.take_pending``), so a parked delta adds no latency.

Hot path: ``send_nowait`` first, ``await send`` only when the channel is full;
only the slow path reads the clock (to measure the backpressure wait).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import attrs
import trio

from ._channel import EventSender
from ._events import Delta, Event, ThinkingDelta, ToolInputDelta

__all__ = ("DEFAULT_BUFFER_SIZE", "Outlet", "Tee")

#: Events a consumer channel holds before the producer blocks (or a coalesce consumer merges).
DEFAULT_BUFFER_SIZE: Final = 64

_DELTAS: Final = (Delta, ThinkingDelta, ToolInputDelta)


class Outlet:
    """One consumer's side of the tee: its send channel, policy and pending merged delta."""

    __slots__ = (
        "_parts", "actor", "buffer_size", "coalesce", "gone", "high_water", "name", "on_cancel", "pending", "send",
    )

    def __init__(
        self,
        send: trio.MemorySendChannel[Event] | EventSender[Event],
        *,
        coalesce: bool = False,
        name: str = "",
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        self.send = send
        """The channel into the consumer."""
        self.coalesce = coalesce
        """True for policy ``coalesce``."""
        self.name = name
        """The consumer's name, for messages."""
        self.buffer_size = buffer_size
        """The channel's buffer size (for the high-water mark when it fills)."""
        self.actor = False
        """True when one of our actors drains this channel (it takes the pending delta)."""
        self.gone = False
        """True once the consumer hung up (its receive side is closed): it is skipped."""
        self.high_water = 0
        """The most events seen waiting in the channel (kept by the tee and the consumer's actor)."""
        self.on_cancel: Callable[[Event], None] | None = None
        """Takes the terminal of a step cancelled before this consumer had it (``ChannelConsumer.on_cancel``)."""
        self.pending: Event | None = None
        """The first delta of the pending merged delta, when the channel was full."""
        self._parts: list[str] = []

    def take_pending(self) -> Event | None:
        """Remove and return the pending merged delta (its pieces joined once), if any."""
        first = self.pending
        if first is None:
            return None
        self.pending = None
        parts = self._parts
        self._parts = []
        if len(parts) == 1:
            return first
        joined = "".join(parts)
        if type(first) is ToolInputDelta:
            return attrs.evolve(first, partial_json=joined)
        return attrs.evolve(first, content=joined)  # type: ignore[call-arg]  # a Delta or ThinkingDelta

    def _park(self, event: Event) -> None:
        self.pending = event
        self._parts = [_piece(event)]

    def _merges(self, event: Event) -> bool:
        first = self.pending
        return (
            type(event) is type(first)
            and event.index == first.index  # type: ignore[attr-defined]  # both deltas (hot path: no isinstance)
            and event.attempt == first.attempt
            and event.step == first.step
            and (type(event) is not ToolInputDelta or event.tool_use_id == first.tool_use_id)  # type: ignore[attr-defined]  # both tool-input deltas
        )


def _piece(event: Event) -> str:
    if type(event) is ToolInputDelta:
        return event.partial_json
    return event.content  # type: ignore[attr-defined]  # a text or thinking delta


class Tee:
    """Send each event to every outlet, honouring each outlet's policy.

    ``backpressure_wait`` sums the seconds ``send`` spent blocked on full channels.
    The tee never closes the outlets' channels: their owner does.
    """

    __slots__ = ("backpressure_wait", "outlets")

    def __init__(self, outlets: Sequence[Outlet]) -> None:
        self.outlets: tuple[Outlet, ...] = tuple(outlets)
        """The consumers, in delivery order."""
        self.backpressure_wait = 0.0
        """Seconds spent blocked on full channels."""

    @property
    def queue_high_water(self) -> int:
        """The most events ever seen waiting in any one consumer channel.

        Handler channels: the largest batch their actor drained (at most the buffer).
        Callers' channels: their buffer size once they filled, else 0 (not sampled per
        event, to keep the hot path lean)."""
        return max((o.high_water for o in self.outlets), default=0)

    async def send(self, event: Event) -> None:
        """Deliver *event* to every live outlet; block while a ``block`` outlet is full.

        Cancellation: an event may have reached some outlets and not others.
        """
        start = self.offer(event)
        if start >= 0:
            await self.send_from(event, start)

    def offer(self, event: Event) -> int:
        """Deliver *event* to the outlets that take it now; return -1 when all did.

        Else return the index of the first outlet that cannot (full, or holding a
        pending merged delta): the caller then awaits ``send_from(event, index)``,
        which delivers to it and the rest. ``offer`` then ``send_from`` is
        ``send`` without a coroutine on the common path (the per-delta hot path).
        """
        for i, outlet in enumerate(self.outlets):
            if outlet.gone:
                continue
            if outlet.pending is not None:
                return i
            try:
                outlet.send.send_nowait(event)
            except trio.WouldBlock:
                return i
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                outlet.gone = True
        return -1

    async def send_from(self, event: Event, start: int) -> None:
        """Deliver *event* to the outlets from index *start* on (after ``offer``)."""
        outlets = self.outlets
        await self._send_slow(outlets[start], event)
        for outlet in outlets[start + 1 :]:
            if not outlet.gone and (outlet.pending is not None or not _try_nowait(outlet, event)):
                await self._send_slow(outlet, event)

    async def _send_slow(self, outlet: Outlet, event: Event) -> None:
        if outlet.coalesce:
            if outlet.pending is not None:
                if isinstance(event, _DELTAS) and outlet._merges(event):
                    outlet._parts.append(_piece(event))
                    return
                # order: the pending delta goes in before anything else
                pending = outlet.take_pending()
                assert pending is not None  # outlet.pending was set
                try:
                    await self._put(outlet, pending)
                except trio.Cancelled:
                    outlet._park(pending)  # not sent (channel ops are atomic): keep it for the terminal
                    raise
                if outlet.gone:
                    return
                try:
                    outlet.send.send_nowait(event)
                    return
                except trio.WouldBlock:
                    pass
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    outlet.gone = True
                    return
            if isinstance(event, _DELTAS):
                outlet.high_water = max(outlet.high_water, outlet.buffer_size)
                outlet._park(event)
                return
        await self._put(outlet, event)

    async def _put(self, outlet: Outlet, event: Event) -> None:
        """Send with a wait when full; measures the wait."""
        try:
            outlet.send.send_nowait(event)
            return
        except trio.WouldBlock:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            outlet.gone = True
            return
        outlet.high_water = max(outlet.high_water, outlet.buffer_size)
        start = trio.current_time()
        try:
            await outlet.send.send(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            outlet.gone = True
        finally:
            self.backpressure_wait += trio.current_time() - start

    async def send_each(self, event: Event, done: set[int]) -> None:
        """Like ``send``, but record in *done* the index of each outlet that has *event*.

        Used for terminal events, so that after a cancellation the rest can be
        delivered (shielded) without sending any outlet a second terminal.
        """
        for i, outlet in enumerate(self.outlets):
            if i in done:
                continue
            if not outlet.gone:
                if outlet.pending is not None or not _try_nowait(outlet, event):
                    await self._send_slow(outlet, event)
            done.add(i)

    async def send_each_apart(self, event: Event, done: set[int]) -> None:
        """Like ``send_each``, but the outlets that are full are waited on side by side.

        Those with room get *event* at once; one full outlet then holds up no
        other, so that when the caller's bound runs out (the terminal event after
        a cancellation) only the outlets that stayed full lack it.
        """
        full: list[int] = []
        for i, outlet in enumerate(self.outlets):
            if i in done:
                continue
            if outlet.gone or (outlet.pending is None and _try_nowait(outlet, event)):
                done.add(i)
            else:
                full.append(i)
        if not full:
            return

        async def one(i: int) -> None:
            await self._send_slow(self.outlets[i], event)
            done.add(i)

        async with trio.open_nursery() as nursery:
            for i in full:
                nursery.start_soon(one, i)


def _try_nowait(outlet: Outlet, event: Event) -> bool:
    try:
        outlet.send.send_nowait(event)
        return True
    except trio.WouldBlock:
        return False
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        outlet.gone = True
        return True
