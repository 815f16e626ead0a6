"""A composite step: sub-steps (``batch[3]``, ``par.branch_a``) streamed to one set of consumers.

``stream_group`` is what ``claude_batch`` and ``parallel_claude`` run on. The
composite step has its own ``StepStarted`` and terminal event (path ``NAME``);
its sub-steps are ordinary ``stream_step`` calls, each with its own path,
``StepStarted`` ... terminal, whose events fan in (through one bounded channel)
to the composite step's handlers, so one handler instance sees the whole step,
every event attributed to its sub-step. Sub-steps send to the run's event stream
themselves; the composite step adds only its own two events there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import trio

from ._actors import HANDLER_TIMEOUT, TERMINAL_DELIVERY_TIMEOUT
from ._events import Cancelled, Done, Event, Failed, Response, StepStarted
from ._run import RunContext
from ._tee import DEFAULT_BUFFER_SIZE, Tee
from ._terminal import Delivery, attach_partial
from ._wiring import ChannelConsumer, Consumer, wire_consumers

__all__ = ("SubConsumer", "stream_group")

SubConsumer = Callable[[], ChannelConsumer]
"""Makes the consumer a sub-step streams into (one per ``stream_step`` call)."""


async def stream_group(
    *,
    run: RunContext,
    path: str,
    consumers: Sequence[Consumer],
    body: Callable[[SubConsumer], Awaitable[Response]],
    step_type: str,
    provider: str = "group",
    model: str | None = None,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    concurrency: int = 1,
    on_handler_error: Literal["isolate", "fail"] = "isolate",
    tasks: int | None = None,
    handler_timeout: float | None = HANDLER_TIMEOUT,
) -> Response:
    """Run *body* as composite step *path*; its sub-steps stream to *consumers*.

    Events: ``StepStarted(path)``, then every sub-step's events as they come,
    then exactly one terminal event for *path*, after every sub-step event
    (docs/engine.md has the details, cancellation included).

    Args:
        run: The run's context; the composite step's own events go to ``run.events``.
        path: The composite step's path.
        consumers: As for ``stream_step``.
        body: ``await body(sub_consumer)``; pass ``consumers=[sub_consumer()]`` to
            each sub-step's ``stream_step``. Returns the composite ``Response``.
        step_type, provider, model: Reported in ``StepStarted``.
        buffer_size: The consumers' channels' buffer; the fan-in's is larger (below).
        concurrency: How many sub-steps may stream at once. The fan-in holds
            ``buffer_size + concurrency`` events: one waiting for each sub-step, and
            ``buffer_size`` for bursts (a message's end is three events at once), so
            that a sub-step does not wait on the fan-in between two runs of its pump.
        on_handler_error, handler_timeout: As for ``stream_step``.
        tasks: How many sub-steps *body* will run, when known (``StepStarted.tasks``).

    Returns:
        *body*'s response.

    Raises:
        Exception: what *body* raised (after ``Failed``), or a ``HandlerError``
            under ``fail``. Carries ``partial`` like ``stream_step``'s errors.

    Closes every consumer channel and handler, on success, error and
    cancellation. Backpressure: a full consumer blocks the fan-in, and so the
    sub-steps. Cancelled: each consumer still gets every started sub-step's
    ``StepStarted`` and terminal event, then the group's ``Cancelled``
    (shielded, bounded by ``TERMINAL_DELIVERY_TIMEOUT``).
    """
    wiring = await wire_consumers(consumers, run)
    to_consumers = Tee(wiring.outlets)  # sub-step events: they reach the run stream by themselves
    to_all = Tee([*wiring.outlets, *([wiring.run_outlet] if wiring.run_outlet is not None else [])])
    delivery = Delivery(wiring, to_all, on_handler_error, handler_timeout)
    fan_in = _FanIn(to_consumers, buffer_size + max(concurrency, 0))
    seq = 0

    def envelope() -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return {"run_id": run.run_id, "step": path, "attempt": 1, "seq": seq, "at": trio.current_time() - run.origin}

    async def produce() -> Event:
        try:
            body_error: Exception | None = None
            response: Response | None = None
            try:
                with delivery.produce_scope:
                    await to_all.send(
                        StepStarted(**envelope(), provider=provider, model=model, step_type=step_type, tasks=tasks)
                    )
                    response = await body(fan_in.sub_consumer)
            except Exception as exc:  # kept until the fan-in is drained
                body_error = exc
            finally:
                fan_in.send.close()
            await fan_in.drained.wait()  # every sub-step event is with the consumers: the terminal comes last
            if delivery.handler_failure is not None:
                raise delivery.handler_failure
            if body_error is not None:
                raise body_error
            assert response is not None
            return Done(**envelope(), response=response)
        except Exception as exc:
            partial = getattr(exc, "partial", None)
            return Failed(
                **envelope(), error=exc, message=str(exc), partial=partial if isinstance(partial, Response) else None
            )

    async def cancelled() -> Event:
        # the sub-steps' terminal events first (each consumer: sub-steps', then ours)
        await fan_in.finish()
        return Cancelled(**envelope())

    try:
        terminal = await delivery.run(produce, cancelled, beside=fan_in.pump)
    except BaseException as exc:
        attach_partial(exc, getattr(delivery.terminal, "partial", None))
        raise
    finally:
        fan_in.send.close()
    if isinstance(terminal, Failed):
        raise terminal.error
    assert isinstance(terminal, Done)
    if delivery.handler_failure is not None:  # a handler failed on Done or in aclose: the response is kept
        attach_partial(delivery.handler_failure, terminal.response)
        raise delivery.handler_failure
    return terminal.response


class _FanIn:
    """The sub-steps' events, through one bounded channel, to the composite step's consumers.

    A sub-step cancelled on its own (a ``fail_fast`` sibling failed) hands its
    terminal event over (``take``) instead of waiting for room in the channel:
    the pump forwards it right after the events that were in the channel when it
    was taken (at most one per sub-step, so the channel's bound grows by at most
    the number of sub-steps). The sub-step's other events still waiting are
    dropped (cancellation is not a drain), so that neither it nor its terminal
    waits behind a slow handler; its ``StepStarted`` still goes first.
    """

    def __init__(self, to_consumers: Tee, size: int) -> None:
        self.to_consumers = to_consumers
        self.send, self.receive = trio.open_memory_channel[Event](size)
        self.drained = trio.Event()
        """Set when the pump has ended (every sub-step event forwarded, or dropped after a cancellation)."""
        # the pump's scopes (its own, and its shielded one after a cancellation): ``finish`` cancels
        # them when the fan-in does not drain in time (nothing may follow the group's terminal)
        self.scope = trio.CancelScope()
        self.scopes = [self.scope]
        self.cancelled: set[str] = set()
        """The sub-steps cancelled before their terminal event: their other events still waiting are dropped."""
        self.dropped: set[str] = set()
        """The sub-steps some of whose events were dropped (their ``Done`` goes as ``Cancelled``)."""
        self.received = 0
        """Events the pump has taken from the channel."""
        self.late: deque[tuple[int, Event]] = deque()
        """Terminal events taken over (``take``), each with the number of events that had entered
        the channel by then: it goes out once the pump has taken that many."""
        self.waiting: trio.CancelScope | None = None
        """The pump's wait for the channel, while it waits (``take`` wakes it)."""

    def sub_consumer(self) -> ChannelConsumer:
        return ChannelConsumer(self.send.clone(), on_cancel=self.take)

    def take(self, terminal: Event) -> None:
        """A cancelled sub-step's terminal event: forwarded after what is in the channel now, never waited on."""
        self.cancelled.add(terminal.step)
        entered = self.received + self.receive.statistics().current_buffer_used
        self.late.append((entered, terminal))
        if self.waiting is not None:
            self.waiting.cancel()

    async def finish(self) -> None:
        """After a cancellation: let the pump forward the sub-steps' terminal events, for at most half the bound."""
        self.send.close()
        with trio.move_on_after(TERMINAL_DELIVERY_TIMEOUT / 2):
            await self.drained.wait()
        for scope in self.scopes:
            scope.cancel()
        await self.drained.wait()

    def _next_nowait(self) -> Event:
        """The next event: a taken-over terminal whose turn it is, else the channel's next (``WouldBlock``, ...)."""
        late = self.late
        if late and late[0][0] <= self.received:
            return late.popleft()[1]
        try:
            event = self.receive.receive_nowait()
        except trio.EndOfChannel:
            if late:  # every sub-step has closed its clone: what was taken over goes last
                return late.popleft()[1]
            raise
        self.received += 1
        return event

    async def _wait(self) -> Event | None:
        """Wait for the channel's next event; ``None`` when ``take`` woke the wait (``EndOfChannel`` at the end)."""
        waiting = self.waiting = trio.CancelScope()
        try:
            with waiting:
                event = await self.receive.receive()
                self.received += 1
                return event
        finally:
            self.waiting = None
        return None

    async def pump(self) -> None:
        """Forward every sub-step event; after a cancellation only their ``StepStarted`` and terminal events.

        A sub-step cancelled on its own is treated the same way at once (see the class).
        """
        current: Event | None = None  # the event being sent (``delivered``: the outlets that have it)
        delivered: set[int] = set()
        cancelled = self.cancelled
        try:
            with self.scope, self.receive:
                try:
                    while True:
                        # what is waiting, taken without a checkpoint per event (trio's receive
                        # yields on every call, so the pump got one event per scheduler pass and
                        # fell behind N sub-steps); waits only when the fan-in is empty
                        try:
                            event = self._next_nowait()
                        except trio.WouldBlock:
                            try:
                                waited = await self._wait()
                            except trio.EndOfChannel:
                                continue  # (the taken-over terminals, if any, then the end)
                            if waited is None:
                                continue  # woken by a taken-over terminal
                            event = waited
                        except trio.EndOfChannel:
                            break
                        if cancelled and event.step in cancelled:
                            if not isinstance(event, _STRUCTURAL):
                                self.dropped.add(event.step)  # in flight, of a cancelled sub-step
                                continue
                            if isinstance(event, Done) and event.step in self.dropped:
                                event = event.as_cancelled()
                        current = event
                        if isinstance(event, _STRUCTURAL):
                            delivered = set()
                            await self.to_consumers.send_each(event, delivered)
                        else:
                            await self.to_consumers.send(event)
                        current = None
                except trio.Cancelled:
                    # the sub-steps send their terminal events (shielded) after a cancellation:
                    # forward those, and their StepStarted, in order; the rest in flight is dropped
                    with trio.move_on_after(TERMINAL_DELIVERY_TIMEOUT, shield=True) as late:
                        self.scopes.append(late)
                        if self.scope.cancel_called:
                            late.cancel()  # already stopped
                        await self._forward_structure(current, delivered)
                    raise
        finally:
            self.drained.set()

    async def _forward_structure(self, current: Event | None, delivered: set[int]) -> None:
        """After a cancellation: finish *current*, then forward each sub-step's ``StepStarted`` and terminal.

        Other events are dropped; a sub-step's ``Done`` after some of its events
        were dropped goes as ``Cancelled`` with its response as ``partial`` (no
        consumer may read an incomplete view as a complete success). Call it
        shielded and bounded.
        """
        dropped = self.dropped

        async def put(event: Event, done: set[int]) -> None:
            if isinstance(event, Done) and event.step in dropped:
                event = event.as_cancelled()
            await self.to_consumers.send_each(event, done)

        if current is not None:
            if isinstance(current, _STRUCTURAL):
                await put(current, delivered)
            else:
                dropped.add(current.step)  # some consumers may not have it
        while True:
            try:
                event = self._next_nowait()
            except trio.WouldBlock:
                try:
                    waited = await self._wait()
                except trio.EndOfChannel:
                    continue
                if waited is None:
                    continue
                event = waited
            except trio.EndOfChannel:
                break
            if isinstance(event, _STRUCTURAL):
                await put(event, set())
            else:
                dropped.add(event.step)


_STRUCTURAL = (StepStarted, Done, Failed, Cancelled)
"""The sub-step events that still reach the consumers after a cancellation."""
