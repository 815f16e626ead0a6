"""A bounded one-consumer event channel: the tee's link to a handler actor.

It behaves as a trio memory channel of the same buffer size (the same errors:
``WouldBlock``, ``EndOfChannel``, ``BrokenResourceError``,
``ClosedResourceError``; ``send`` and ``receive`` are checkpoints; a cancelled
``send`` sent nothing and a cancelled ``receive`` took nothing), with one
consumer and no ``clone``. What it adds is ``receive_batch``: everything
waiting, in one call, parking only when nothing is; and direct hand-off:
while the receiver is parked in ``receive_batch(direct)``, a send calls
``direct(value)`` in the sender's task instead of waking the receiver.

Why not trio's: at a paced stream's rate (one event per read) the actor is
woken once per event, and trio's ``receive`` raises and catches ``WouldBlock``
on each empty try, parks through an ``OrderedDict`` and builds a closure per
wait; this channel does none of that (the bench compares the two).

Why direct hand-off: a woken receiver runs in the scheduler's next batch, so
each event costs a task step, and waits one batch more, on top of the
sender's. A consumer that can take an event synchronously (a handler's
``handle_nowait``) takes it at once, in order: only while its task is parked
with nothing waiting, so nothing sent before it is still unhandled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

import trio
from trio.lowlevel import (
    Abort,
    Task,
    current_task,
    enable_ki_protection,
    reschedule,
    wait_task_rescheduled,
)

__all__ = ("DirectError", "EventReceiver", "EventSender", "open_event_channel")

T = TypeVar("T")


class DirectError(Exception):
    """Raised by ``receive_batch(direct)`` when *direct* raised in a sender's task; ``error`` is what it raised.

    The value it was called with counts as sent (and handled, with that error).
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(f"direct hand-off raised {type(error).__name__}: {error}")
        self.error = error


class _State(Generic[T]):
    __slots__ = (
        "capacity", "data", "direct", "direct_error", "handed", "receive_closed", "receiver", "refused",
        "send_closed", "senders",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data: deque[T] = deque()
        # 1 when data[0] was handed to a parked receiver (trio does not count that one in the buffer)
        self.handed = 0
        self.receiver: Task | None = None
        # the parked receiver's direct hand-off (receive_batch(direct)): set only while it is parked
        self.direct: Callable[[T], None] | None = None
        # what a direct hand-off raised: the woken receiver raises DirectError with it
        self.direct_error: Exception | None = None
        # senders parked on a full buffer, in order: {task: value}
        self.senders: dict[Task, T] = {}
        # parked senders woken by the receiver's close: their values were not sent
        self.refused: set[Task] = set()
        self.send_closed = False
        self.receive_closed = False

    def abort_receive(self, _: Any) -> Abort:
        self.receiver = None
        self.direct = None
        return Abort.SUCCEEDED

    def wake_receiver(self) -> None:
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            self.direct = None
            reschedule(receiver)

    def take_senders(self) -> None:
        """Move the parked senders' values into the buffer, in order, and wake them (sent)."""
        senders = self.senders
        data = self.data
        for task, value in senders.items():
            data.append(value)
            reschedule(task)
        senders.clear()


class _Endpoint(Generic[T]):
    """What both sides share: the state, ``close`` once, ``aclose`` and the context manager."""

    __slots__ = ("_closed", "_state")

    def __init__(self, state: _State[T]) -> None:
        self._state = state
        self._closed = False

    @enable_ki_protection
    def close(self) -> None:
        """Close this side (idempotent); see ``_close`` on each side."""
        if self._closed:
            return
        self._closed = True
        self._close(self._state)

    def _close(self, state: _State[T]) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_event_channel(max_buffer_size: int) -> tuple[EventSender[T], EventReceiver[T]]:
    """A bounded channel with one consumer: ``(send side, receive side)``.

    Args:
        max_buffer_size: Events held before ``send`` blocks (0: a hand-off, as in trio).
    """
    if max_buffer_size < 0:
        raise ValueError("max_buffer_size must be >= 0")
    state: _State[T] = _State(int(max_buffer_size))
    return EventSender(state), EventReceiver(state)


class EventSender(_Endpoint[T]):
    """The send side (the tee's outlet): ``send_nowait``, ``send``, ``close``."""

    __slots__ = ()

    def send_nowait(self, value: T) -> None:
        """Put *value* in the buffer, or raise ``WouldBlock`` when it is full.

        While the receiver is parked in ``receive_batch(direct)``, *value* goes to
        ``direct(value)`` here, in the sender's task (not under KI protection: it
        is the consumer's code). When that raises ``WouldBlock`` the receiver is
        woken with *value* instead; when it raises another ``Exception`` the
        receiver is woken to raise ``DirectError``, and *value* counts as sent.
        """
        state = self._state
        direct = state.direct
        if direct is not None and not self._closed:
            try:
                direct(value)
                return
            except trio.WouldBlock:
                pass  # the receiver takes this one: woken below, which ends the direct hand-off
            except Exception as exc:
                state.direct_error = exc
                state.wake_receiver()
                return
        self._send_nowait(value)

    @enable_ki_protection
    def _send_nowait(self, value: T) -> None:
        if self._closed:
            raise trio.ClosedResourceError
        state = self._state
        if state.receive_closed:
            raise trio.BrokenResourceError
        receiver = state.receiver
        if receiver is not None:  # parked, so the buffer is empty: hand the value over
            state.data.append(value)
            state.handed = 1
            state.wake_receiver()
            return
        if len(state.data) - state.handed < state.capacity and not state.senders:
            state.data.append(value)
            return
        raise trio.WouldBlock

    @enable_ki_protection
    async def send(self, value: T) -> None:
        """Send *value*, waiting while the buffer is full (a cancelled send sent nothing)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.send_nowait(value)
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        state = self._state
        task = current_task()
        state.senders[task] = value

        def abort(_: Any) -> Abort:
            del state.senders[task]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)
        if task in state.refused:
            state.refused.discard(task)
            raise trio.BrokenResourceError

    def _close(self, state: _State[T]) -> None:
        """The receiver gets what is buffered, then ``EndOfChannel``."""
        state.send_closed = True
        state.wake_receiver()


class EventReceiver(_Endpoint[T]):
    """The receive side (a handler actor's): ``receive_batch``, ``receive``, ``receive_nowait``."""

    __slots__ = ()

    def waiting(self) -> bool:
        """True when an event is waiting (in the buffer, or with a parked sender)."""
        state = self._state
        return bool(state.data) or bool(state.senders)

    @enable_ki_protection
    def receive_nowait(self) -> T:
        """The next event, or ``WouldBlock`` (nothing waiting) / ``EndOfChannel`` (sender closed, drained)."""
        if self._closed:
            raise trio.ClosedResourceError
        state = self._state
        if state.senders:
            state.take_senders()
        if state.data:
            state.handed = 0
            return state.data.popleft()
        if state.send_closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    @enable_ki_protection
    async def receive_batch(self, direct: Callable[[T], None] | None = None) -> list[T]:
        """Every event waiting (at least one), in order; waits while there is none.

        Like ``receive_nowait`` then ``receive``: when events are waiting they are
        taken at once, with no checkpoint (so events already in the channel reach
        the actor before a pending cancellation does); otherwise it waits, a
        checkpoint. Raises ``EndOfChannel`` once the sender closed and all is taken.

        *direct*: while this waits, each send calls ``direct(value)`` in the
        sender's task instead of waking this one (see ``EventSender.send_nowait``);
        this returns only when *direct* declined a value (``WouldBlock``: that
        value is the batch), raises ``DirectError`` when it failed, and
        ``EndOfChannel`` at the close.
        """
        if self._closed:
            raise trio.ClosedResourceError
        state = self._state
        if not state.data and not state.senders:
            if state.send_closed:
                await trio.lowlevel.checkpoint()
                raise trio.EndOfChannel
            if state.receiver is not None:
                raise trio.BusyResourceError("another task is already receiving from this channel")
            state.receiver = current_task()
            state.direct = direct
            # woken by a send (its value is in the buffer), the sender's close, or a failed direct hand-off
            await wait_task_rescheduled(state.abort_receive)
            error = state.direct_error
            if error is not None:
                state.direct_error = None
                raise DirectError(error) from error
        if state.senders:
            state.take_senders()
        data = state.data
        if not data:
            raise trio.EndOfChannel  # the sender closed while we waited
        state.handed = 0
        if len(data) == 1:
            return [data.popleft()]
        batch = list(data)
        data.clear()
        return batch

    async def receive(self) -> T:
        """The next event; waits while there is none. A checkpoint."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            value = self.receive_nowait()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return value
        state = self._state
        if state.receiver is not None:
            raise trio.BusyResourceError("another task is already receiving from this channel")
        state.receiver = current_task()
        await wait_task_rescheduled(state.abort_receive)
        return self.receive_nowait()  # what woke us: an event, or the sender's close (EndOfChannel)

    def _close(self, state: _State[T]) -> None:
        """The sender gets ``BrokenResourceError`` (parked senders too)."""
        state.receive_closed = True
        senders = list(state.senders)
        state.senders.clear()
        state.data.clear()
        for task in senders:
            state.refused.add(task)
            reschedule(task)

    def __aiter__(self) -> EventReceiver[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
