"""``check_handler``: drive a user's handler through generated streams and check the protocol.

Each hypothesis example builds a FRESH handler from ``factory()``, wraps it in a
probe that records what it receives and counts ``aclose``, and feeds it a
generated event stream through the engine's tee and handler actor (the same
code a real run uses), with a drawn consumer policy, buffer size, consumer
speed and cancellation point, on virtual time (``trio.testing.MockClock`` with
autojump). A failure is a ``HandlerCheckError`` whose message explains
hypothesis's shrunk counterexample in plain words.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final, Literal

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..engine import (
    TERMINAL_EVENTS,
    Cancelled,
    Delta,
    Event,
    Message,
    Response,
    Retrying,
    ToolResult,
)
from ..engine._actors import (
    HANDLER_CLOSE_TIMEOUT,
    HANDLER_TIMEOUT,
    TERMINAL_DELIVERY_TIMEOUT,
    direct_handle,
    handler_actor,
)
from ..engine._channel import EventReceiver, EventSender, open_event_channel
from ..engine._tee import Outlet, Tee
from ._invariants import InvariantError, check_delivery, describe_event
from ._strategies import event_streams
from ._virtual import refuse_inside_trio

__all__ = ("HandlerCheckError", "assert_handler_conforms", "check_handler")

#: Virtual seconds after which a run that has not ended counts as blocked forever.
BLOCKED_TIMEOUT: Final = 3600.0

#: Seconds a consumer may take per call: instant, fast, slow, very slow (dyadic: exact sums).
CONSUMER_DELAYS: Final = (0.0, 0.0078125, 0.25, 2.0)


_DELAYS: Final = st.sampled_from(CONSUMER_DELAYS)
_BOOLS: Final = st.booleans()
_DECLINE_EVERY: Final = st.integers(0, 3)


@functools.lru_cache(maxsize=512)
def _cancel_points(count: int) -> st.SearchStrategy[int]:
    return st.integers(0, count)


class HandlerCheckError(AssertionError):
    """A handler broke the handler protocol on a (shrunk) generated stream."""


@attrs.define
class _Call:
    """What the probe saw of one call into the handler."""

    events: tuple[Event, ...]
    text_after: str | None = None


class _Probe:
    """Wraps the handler under test: records what it receives, counts ``aclose``."""

    def __init__(self, inner: Any, policy: str, delay: float, text_of: Callable[[Any], str] | None):
        self.inner = inner
        self.policy = policy
        self.delay = delay
        self.text_of = text_of
        self.received: list[Event] = []
        self.snapshots: list[tuple[int, str]] = []  # (events received so far, text then)
        self.close_count = 0
        self.after_close: list[Event] = []
        self.errors: list[tuple[str, BaseException]] = []
        self.blocked_in: str | None = None
        self.call_bound = HANDLER_TIMEOUT
        """The engine's bound on one handler call in this run."""
        self.stalled_in: str | None = None
        """The call that bound cancelled, if any."""
        self.close_hung = False
        """``aclose`` was still running when the engine's close bound cancelled it."""
        self.text_before_close: str | None = None
        self.text_after_close: str | None = None

    def _snapshot(self) -> None:
        if self.text_of is not None:
            try:
                self.snapshots.append((len(self.received), self.text_of(self.inner)))
            except Exception as exc:
                self.errors.append(("reading its text", exc))

    async def _call(self, what: str, events: Sequence[Event], call: Any) -> None:
        if self.close_count:
            self.after_close.extend(events)
        self.received.extend(events)
        started = trio.current_time()
        try:
            if self.delay:
                await trio.sleep(self.delay)
            await call()
        except trio.Cancelled:
            self.blocked_in = what
            if trio.current_time() - started >= self.call_bound:
                self.stalled_in = what  # cancelled by the engine's bound on one call, not by the run
            raise
        except BaseException as exc:
            self.errors.append((what, exc))
            raise
        self._snapshot()

    async def handle(self, event: Event) -> None:
        await self._call(f"handle({describe_event(event)})", (event,), lambda: self.inner.handle(event))

    async def aclose(self) -> None:
        self.close_count += 1
        if self.text_of is not None:
            try:
                self.text_before_close = self.text_of(self.inner)
            except Exception as exc:
                self.errors.append(("reading its text", exc))
        try:
            await self.inner.aclose()
        except trio.Cancelled:
            self.blocked_in = "aclose()"
            self.close_hung = True
            raise
        except BaseException as exc:
            self.errors.append(("aclose()", exc))
            raise
        finally:
            if self.text_of is not None:
                try:
                    self.text_after_close = self.text_of(self.inner)
                except Exception as exc:
                    self.errors.append(("reading its text", exc))


class _BatchProbe(_Probe):
    """The probe for handlers that define ``handle_batch`` (the engine prefers it)."""

    async def handle_batch(self, events: Sequence[Event]) -> None:
        events = list(events)
        first = describe_event(events[0]) if events else "nothing"
        what = f"handle_batch([{first}{', ...' if len(events) > 1 else ''}] of {len(events)})"
        await self._call(what, events, lambda: self.inner.handle_batch(events))


class _DirectMixin:
    """The probe's ``handle_nowait``, for handlers that define one: the engine calls it in the sender's task.

    ``decline_every`` N > 0: the probe itself declines every Nth call (``WouldBlock``,
    without calling the handler), so that event reaches the handler through its
    actor instead; the engine mixes both paths the same way. The consumer delay
    applies to the actor's calls only: a direct call cannot wait.
    """

    def __init__(self, *args: Any, decline_every: int = 0) -> None:
        super().__init__(*args)
        self.decline_every = decline_every
        self.direct_calls = 0
        self.taken_directly: list[Event] = []

    def handle_nowait(self: Any, event: Event) -> None:
        self.direct_calls += 1
        if self.decline_every and self.direct_calls % self.decline_every == 0:
            raise trio.WouldBlock
        if self.close_count:
            self.after_close.append(event)
        try:
            self.inner.handle_nowait(event)
        except trio.WouldBlock:
            raise  # declined by the handler: it received nothing
        except BaseException as exc:
            self.received.append(event)
            self.errors.append((f"handle_nowait({describe_event(event)})", exc))
            raise
        self.received.append(event)
        self.taken_directly.append(event)
        self._snapshot()


class _DirectProbe(_DirectMixin, _Probe):
    pass


class _DirectBatchProbe(_DirectMixin, _BatchProbe):
    pass


def _make_probe(
    handler: Any, policy: str, delay: float, text_of: Callable[[Any], str] | None, decline_every: int = 0
) -> _Probe:
    batch = callable(getattr(handler, "handle_batch", None))
    if direct_handle(handler) is not None:  # the engine's own rule: what it would call directly
        direct = _DirectBatchProbe if batch else _DirectProbe
        return direct(handler, policy, delay, text_of, decline_every=decline_every)
    return (_BatchProbe if batch else _Probe)(handler, policy, delay, text_of)


@attrs.frozen
class _Case:
    """One drawn example: the stream and how it is delivered."""

    events: tuple[Event, ...]
    policy: str
    buffer_size: int
    delay: float
    cancel_at: int | None
    decline_every: int = 0
    """For a handler with ``handle_nowait``: the check declines every Nth call (0: none)."""

    def describe(self, direct: bool = False) -> str:
        lines = [f"  {i:>3}. {describe_event(e)}" for i, e in enumerate(self.events)]
        cancel = (
            "none: the stream ran to its end"
            if self.cancel_at is None
            else f"the run was cancelled after event #{self.cancel_at - 1} was sent"
            if self.cancel_at
            else "the run was cancelled before any event was sent"
        )
        declined = (
            ""
            if not direct
            else "; handle_nowait took every event offered"
            if not self.decline_every
            else f"; the check declined 1 handle_nowait call in {self.decline_every} (sent through handle instead)"
        )
        return (
            f"policy={self.policy!r}, buffer size {self.buffer_size}, "
            f"consumer delay {self.delay} s per call{declined}; cancellation: {cancel}\n"
            f"events fed ({len(self.events)}):\n" + "\n".join(lines)
        )


@st.composite
def _cases(
    draw: st.DrawFn,
    streams: st.SearchStrategy[list[Event]],
    policies: Sequence[str],
    buffer_sizes: tuple[int, int],
    cancellation: bool,
) -> _Case:
    events = tuple(draw(streams))
    policy = draw(st.sampled_from(tuple(policies)))
    buffer_size = draw(st.integers(*buffer_sizes))
    delay = draw(_DELAYS)
    cancel_at = None
    if cancellation and draw(_BOOLS):
        cancel_at = draw(_cancel_points(len(events)))
    return _Case(events, policy, buffer_size, delay, cancel_at, draw(_DECLINE_EVERY))


def _text_reader(handler: Any, text_of: Callable[[Any], str] | None) -> Callable[[Any], str] | None:
    if text_of is not None:
        return text_of
    if callable(getattr(handler, "observed_text", None)):
        return lambda h: h.observed_text()
    return None


def _expected_text(events: Sequence[Event], mode: str) -> str:
    if mode == "all":
        return "".join(e.content for e in events if isinstance(e, Delta))
    # "final": what the steps' responses keep. A call's deltas are kept once its Message
    # arrives; a Retrying supersedes the step's deltas since its last Message or ToolResult.
    kept: list[int] = []
    pending: dict[str, list[int]] = {}
    for position, event in enumerate(events):
        if isinstance(event, Delta):
            pending.setdefault(event.step, []).append(position)
        elif isinstance(event, Message | ToolResult):
            kept.extend(pending.pop(event.step, ()))
        elif isinstance(event, Retrying):
            pending.pop(event.step, None)
    for positions in pending.values():
        kept.extend(positions)
    return "".join(events[i].content for i in sorted(kept))  # type: ignore[attr-defined]


def _last_delta(events: Sequence[Event]) -> Delta | None:
    for event in reversed(events):
        if isinstance(event, Delta):
            return event
    return None


def _diagnose_text(probe: _Probe, case: _Case, expected: str) -> str | None:
    observed = probe.text_after_close
    if observed is None or observed == expected:
        return None
    head = (
        f"after the stream ended and aclose returned, the handler reports the text {observed!r}, "
        f"expected {expected!r}"
    )
    last = _last_delta(case.events)
    # Did the text ever shrink or change what it had shown? Find the first time.
    history = [*probe.snapshots, (-1, observed)]  # -1: after aclose
    for (_, before), (count, after) in zip(history, history[1:], strict=False):
        if after.startswith(before):
            continue
        culprit = probe.received[count - 1] if count > 0 else None
        at = f"handling {describe_event(culprit)}" if culprit is not None else "closing (aclose)"
        if (
            last is not None
            and (culprit is None or isinstance(culprit, TERMINAL_EVENTS))
            and any(e is last for e in (probe.received if count < 0 else probe.received[:count]))
            and before.endswith(last.content)
            and before[: -len(last.content)] == after
            and expected.startswith(before)
        ):
            return (
                f"{head}.\nThe handler dropped the last delta before close: it had shown "
                f"{last.content!r} ({describe_event(last)}) and lost it when {at}."
            )
        return f"{head}.\nThe handler removed text it had already shown: {before!r} became {after!r} when {at}."
    if not expected.startswith(observed):
        return f"{head}: the text differs (not just a missing end)"
    missing = expected[len(observed) :]
    closing = probe.text_before_close
    unchanged = (
        f" aclose left its text unchanged at {observed!r}." if closing is not None and closing == observed else ""
    )
    direct = [e for e in getattr(probe, "taken_directly", ()) if isinstance(e, Delta) and e.content]
    if direct and missing:
        return (
            f"{head}.\nThe end of the stream, {missing!r}, never showed; {len(direct)} delta(s) came "
            f"through handle_nowait, first {describe_event(direct[0])}. handle_nowait must handle an "
            "event as handle does, or raise trio.WouldBlock having done nothing."
        )
    return (
        f"{head}.\nThe handler did not flush in aclose: the end of the stream, {missing!r}, "
        f"was never written.{unchanged} (aclose must flush what the handler holds.)"
    )


def _run_case(
    factory: Callable[[], Any],
    case: _Case,
    *,
    text_of: Callable[[Any], str] | None,
    expect_text: str,
    allowed_errors: tuple[type[BaseException], ...],
    timeout: float,
    handler_timeout: float = HANDLER_TIMEOUT,
) -> None:
    handler = factory()
    probe = _make_probe(handler, case.policy, case.delay, _text_reader(handler, text_of), case.decline_every)
    probe.call_bound = handler_timeout
    outcome: dict[str, Any] = {}

    async def main() -> None:
        with trio.move_on_after(timeout) as guard:
            try:
                outcome["sent"] = await feed_handler(
                    list(case.events),
                    probe,
                    policy=case.policy,
                    buffer_size=case.buffer_size,
                    cancel_at=case.cancel_at,
                    handler_timeout=None if handler_timeout == math.inf else handler_timeout,
                )
            except Exception as exc:
                outcome["escaped"] = exc
        outcome["timed_out"] = guard.cancelled_caught

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    problems: list[str] = []
    if outcome["timed_out"]:
        inside = probe.blocked_in or "the engine, waiting on the handler"
        problems.append(
            f"the handler blocked forever: nothing finished within {timeout:g} virtual seconds; "
            f"it was stuck in {inside}"
        )
    if probe.stalled_in is not None and not outcome["timed_out"]:
        problems.append(
            f"the handler blocked forever: {probe.stalled_in} did not return within {probe.call_bound:g} "
            "seconds, the engine's bound on one handler call (handler_timeout), which then fails it; "
            f"it was stuck in {probe.stalled_in}"
        )
    if probe.close_hung:
        problems.append(
            f"aclose() did not return within {HANDLER_CLOSE_TIMEOUT:g} seconds, the engine's bound "
            "on closing a handler: it blocks forever or far too long, and what it holds may be lost"
        )
    for what, exc in probe.errors:
        if not isinstance(exc, allowed_errors):
            problems.append(f"an exception escaped the handler: {what} raised {type(exc).__name__}: {exc}")
    escaped = outcome.get("escaped")
    if escaped is not None and not probe.errors and not isinstance(escaped, allowed_errors):
        problems.append(f"the run raised {type(escaped).__name__}: {escaped}")
    if probe.close_count != 1:
        problems.append(f"aclose was called {probe.close_count} times; it must be called exactly once")
    if probe.after_close:
        problems.append(
            f"the handler was given {len(probe.after_close)} event(s) after aclose, "
            f"first {describe_event(probe.after_close[0])}"
        )
    # an allowed error stops the handler's feed (policy fail): order and text are moot then
    clean = not problems and not outcome["timed_out"] and not probe.errors and escaped is None
    sent = outcome.get("sent", list(case.events))
    if clean:
        try:
            check_delivery(sent, probe.received, policy=case.policy, complete=case.cancel_at is None)  # type: ignore[arg-type]  # case.policy is one of the two literals
        except InvariantError as exc:
            problems.append(f"the events did not arrive in order: {exc}")
    if clean and case.cancel_at is None and probe.text_of is not None:
        message = _diagnose_text(probe, case, _expected_text(case.events, expect_text))
        if message:
            problems.append(message)
    if problems:
        noted = "".join(f"\n  warning: {w.message}" for w in caught)
        raise HandlerCheckError(
            f"handler {type(handler).__name__} broke the handler protocol:\n- "
            + "\n- ".join(problems)
            + f"\nCounterexample (shrunk): {case.describe(isinstance(probe, _DirectMixin))}{noted}"
        )


async def feed_handler(
    events: Sequence[Event],
    handler: Any,
    *,
    policy: str,
    buffer_size: int,
    cancel_at: int | None = None,
    handler_timeout: float | None = HANDLER_TIMEOUT,
) -> list[Event]:
    """Feed *events* to *handler* through the engine's tee and handler actor.

    This is what ``stream_step`` does with a handler consumer, minus the
    provider: events are sent at their ``at`` times (on the trio clock) through
    a ``Tee`` outlet of *buffer_size* with *policy*, drained by the engine's
    ``handler_actor`` (handler errors fail the step: policy ``fail``; a call
    longer than *handler_timeout* seconds is such an error, ``None``: no bound). With
    *cancel_at*, the run is cancelled before event ``cancel_at`` is sent; then,
    as the step actor does, every unfinished step's ``Cancelled`` terminal is
    delivered (shielded, bounded) and the handler is closed.

    Returns:
        The events sent, in order, including those cut short by the
        cancellation and the ``Cancelled`` terminals.
    """
    sent: list[Event] = []
    link: tuple[EventSender[Event], EventReceiver[Event]] = open_event_channel(buffer_size)
    send_events, receive_events = link  # the engine's own link
    outlet = Outlet(
        send_events, coalesce=policy == "coalesce", name="handler under test", buffer_size=buffer_size
    )
    outlet.actor = True
    tee = Tee([outlet])
    produce_scope = trio.CancelScope()

    def fail(error: Exception) -> None:
        produce_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                handler_actor, receive_events, handler, outlet, name="handler under test", on_error="fail",
                fail=fail, handler_timeout=handler_timeout,
            )
        )
        try:
            with produce_scope:
                start = trio.current_time()
                for i, event in enumerate(events):
                    if i == cancel_at:
                        nursery.cancel_scope.cancel()
                        await trio.lowlevel.checkpoint()
                    await trio.sleep_until(start + event.at)
                    sent.append(event)
                    await tee.send(event)
        except trio.Cancelled:
            with trio.move_on_after(TERMINAL_DELIVERY_TIMEOUT, shield=True):
                for terminal in _cancelled_terminals(sent, trio.current_time() - start):
                    sent.append(terminal)
                    await tee.send_each(terminal, set())
            raise
        finally:
            send_events.close()
    return sent


def _cancelled_terminals(sent: Sequence[Event], now: float) -> list[Event]:
    """A ``Cancelled`` for each step that has begun and not ended, as the step actor sends."""
    last: dict[str, Event] = {}
    for event in sent:
        if event.step:
            last[event.step] = event
    return [
        Cancelled(
            run_id=event.run_id,
            step=step,
            attempt=event.attempt,
            seq=event.seq + 1,
            at=max(now, event.at),
            partial=Response(),
        )
        for step, event in last.items()
        if not isinstance(event, TERMINAL_EVENTS)
    ]


def check_handler(
    factory: Callable[[], Any],
    *,
    max_examples: int = 100,
    policies: Collection[Literal["block", "coalesce"]] = ("block", "coalesce"),
    buffer_sizes: tuple[int, int] = (0, 8),
    streams: st.SearchStrategy[list[Event]] | None = None,
    cancellation: bool = True,
    text_of: Callable[[Any], str] | None = None,
    expect_text: Literal["all", "final"] = "all",
    allowed_errors: tuple[type[BaseException], ...] = (),
    timeout: float = BLOCKED_TIMEOUT,
    handler_timeout: float | None = None,
    settings_: settings | None = None,
) -> None:
    """Check that handlers from *factory* follow the handler protocol on generated streams.

    For each example, a fresh handler from ``factory()`` is fed a generated
    stream through the engine's tee and handler actor, with a drawn policy,
    buffer size (``buffer_sizes``, inclusive), consumer speed and cancellation
    point, on virtual time. Checked: ``aclose`` is called exactly once, also on
    cancellation or error; events arrive in order (merged deltas only under
    ``coalesce``); no exception escapes the handler (unless in
    ``allowed_errors``); nothing blocks for ``timeout`` virtual seconds, and no
    ``handle`` / ``handle_batch`` call outlasts the engine's bound on one call
    (``handler_timeout``; a report names the call). When
    the handler reports its text (a method ``observed_text()``, or *text_of*),
    after a normal end that text must equal the stream's ``Delta`` text: all of
    it (``expect_text="all"``) or only what each step's response keeps
    (``"final"``: no failed call's text, which a ``Retrying`` superseded).

    Args:
        factory: Returns a new handler each call.
        max_examples: Hypothesis examples to run.
        policies: Consumer policies to draw from.
        buffer_sizes: Inclusive range of channel buffer sizes.
        streams: A strategy for event lists; default ``event_streams()``.
        cancellation: Also draw cancellation points.
        text_of: ``callable(handler) -> str`` reading the text a handler shows.
        expect_text: Which deltas that text must hold.
        allowed_errors: Exceptions the handler may raise on purpose.
        timeout: Virtual seconds after which a run counts as blocked forever.
        handler_timeout: Virtual seconds one handler call may take: the engine's
            stall bound, as a step's ``handler_timeout_ms`` sets it (``math.inf``:
            none). Default: the engine's (``HANDLER_TIMEOUT``), or ``timeout`` when
            that is raised above its default (slow calls are then allowed).
        settings_: Hypothesis settings to use instead of the defaults.

    Raises:
        HandlerCheckError: for the shrunk counterexample, explained in plain words.
    """
    refuse_inside_trio(
        "check_handler runs each example in its own trio.run on a virtual clock; "
        "call it from a sync test (or a worker thread), not from async code"
    )
    call_bound = handler_timeout
    if call_bound is None:
        call_bound = HANDLER_TIMEOUT if timeout <= BLOCKED_TIMEOUT else timeout
    strategy = _cases(event_streams() if streams is None else streams, tuple(policies), buffer_sizes, cancellation)
    config = settings_ or settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )

    @config
    @given(case=strategy)
    def run_example(case: _Case) -> None:
        _run_case(
            factory,
            case,
            text_of=text_of,
            expect_text=expect_text,
            allowed_errors=allowed_errors,
            timeout=timeout,
            handler_timeout=call_bound,
        )

    run_example()


def assert_handler_conforms(factory: Callable[[], Any], **kwargs: Any) -> None:
    """The pytest-facing form of ``check_handler``: same arguments, fails the test.

    Hypothesis adds the falsifying example to the report; the message says
    which rule broke, the events fed, the buffer size, the policy and the
    cancellation point.
    """
    __tracebackhide__ = True
    check_handler(factory, **kwargs)
