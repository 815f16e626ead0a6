"""Check DESIGN.md's event invariants 1-4 on recorded event lists.

``check_invariants(events)`` checks one recorded list (what a handler or the
run's event stream saw). ``check_delivery(sent, received, policy=...)`` checks
invariant 4 between what was sent to a consumer and what it received.
Failures raise ``InvariantError`` (an ``AssertionError``) in plain words,
naming the step, the seq and the event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Literal, NoReturn

import attrs

from ..engine import (
    TERMINAL_EVENTS,
    Cancelled,
    Delta,
    Done,
    Event,
    Message,
    Retrying,
    RunFinished,
    ThinkingDelta,
    ToolInputDelta,
    ToolResult,
    ToolUse,
)

__all__ = ("InvariantError", "check_delivery", "check_invariants", "describe_event")

_DELTAS = (Delta, ThinkingDelta, ToolInputDelta)
_MAX_FIELD = 60


class InvariantError(AssertionError):
    """A recorded event list breaks one of DESIGN.md's event invariants."""


def describe_event(event: Event) -> str:
    """One short line for *event*: its type, step, attempt, seq and main fields."""
    skip = {"run_id", "step", "attempt", "seq", "at"}
    parts = [f"step={event.step!r}", f"attempt={event.attempt}", f"seq={event.seq}"]
    for field in attrs.fields(type(event)):
        if field.name in skip:
            continue
        value = getattr(event, field.name)
        if field.name == "response" and value is not None:
            text = repr(value.text)
        elif field.name == "partial" and value is not None:
            text = f"Response(text={value.text!r})"
        else:
            text = repr(value)
        if len(text) > _MAX_FIELD:
            text = text[: _MAX_FIELD - 3] + "..."
        parts.append(f"{field.name}={text}")
    return f"{type(event).__name__}({', '.join(parts)})"


def _fail(rule: str, message: str, event: Event | None = None, position: int | None = None) -> NoReturn:
    where = ""
    if event is not None:
        where = f"\n  at event #{position}: {describe_event(event)}"
    raise InvariantError(f"invariant {rule} broken: {message}{where}")


def check_invariants(events: Iterable[Event]) -> None:
    """Check invariants 1-4 of DESIGN.md on one complete, recorded event list.

    1. Per step, ``seq`` strictly increases and ``at`` never decreases; exactly one
       terminal event (``Done``, ``Failed``, ``Cancelled``) and it is the step's last.
    2. The kept ``Delta`` text concatenates to ``Done.response.text``: a model
       call's deltas are kept once its ``Message`` arrives, and a ``Retrying``
       supersedes the deltas since the step's last ``Message`` or ``ToolResult``
       (the failed call's; the calls before it stay, whichever attempt made
       them). Each tool's ``ToolInputDelta`` pieces concatenate to JSON that
       parses to its ``ToolUse.input``.
    3. An attempt after the first is announced by a ``Retrying`` (with that
       ``next_attempt``) before any of its events; attempts never go back. A
       tool call runs once: no two ``ToolResult`` events of a step share a
       ``tool_use_id`` (a retry resumes, it never redoes a finished call).
       Cancellation drops the events in flight, never the terminal: so a
       ``Cancelled`` may name an attempt whose ``Retrying`` was lost.
    4. Order: ``RunFinished``, if present, is the last event. (Between a sender
       and a receiver, use ``check_delivery``.)

    Deltas merged by a ``coalesce`` consumer still pass: merging keeps text.

    Args:
        events: The events in the order they were received.

    Raises:
        InvariantError: naming the rule, the step, the seq and the event.
    """
    events = list(events)
    checker = _Checker(events)
    for position, event in enumerate(events):
        if isinstance(event, RunFinished) and position != len(events) - 1:
            _fail("4", "RunFinished is not the run's last event", event, position)
        if event.step == "":
            continue
        checker.order(event, position)
        checker.attempts(event, position)
        checker.content(event, position)
    checker.finish()


class _Checker:
    """What ``check_invariants`` remembers per step, and one method per group of rules."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.last_seq: dict[str, tuple[int, int]] = {}  # step -> (seq, position)
        self.last_at: dict[str, float] = {}
        self.terminal_at: dict[str, int] = {}
        self.attempt_of: dict[str, int] = {}
        self.announced: dict[str, set[int]] = {}
        self.kept: dict[str, list[str]] = {}  # the text of the step's finished calls
        self.pending: dict[str, list[str]] = {}  # the text of the step's call in progress
        self.tool_results: dict[str, dict[str, int]] = {}  # tool_use_id -> position of its ToolResult
        self.tool_json: dict[tuple[str, int, str], list[str]] = {}

    def order(self, event: Event, position: int) -> None:
        """Invariant 1: nothing after the terminal, seq strictly increases, at never goes back."""
        step = event.step
        if step in self.terminal_at:
            first = self.events[self.terminal_at[step]]
            _fail(
                "1",
                f"step {step!r} has an event after its terminal {type(first).__name__} "
                f"(seq {first.seq}, event #{self.terminal_at[step]})",
                event,
                position,
            )
        if step in self.last_seq and event.seq <= self.last_seq[step][0]:
            prev, prev_pos = self.last_seq[step]
            _fail(
                "1",
                f"in step {step!r}, seq {event.seq} does not increase on the previous seq {prev} "
                f"(event #{prev_pos})",
                event,
                position,
            )
        self.last_seq[step] = (event.seq, position)
        if step in self.last_at and event.at < self.last_at[step]:
            _fail("1", f"in step {step!r}, at={event.at} goes back from {self.last_at[step]}", event, position)
        self.last_at[step] = event.at
        if isinstance(event, TERMINAL_EVENTS):
            self.terminal_at[step] = position

    def attempts(self, event: Event, position: int) -> None:
        """Invariant 3: attempts only move forward, each announced by a ``Retrying``."""
        step = event.step
        announced = self.announced.get(step, set())
        current = self.attempt_of.get(step, event.attempt)
        if event.attempt < current:
            _fail(
                "3",
                f"in step {step!r}, attempt {event.attempt} comes after attempt {current} "
                "(a superseded attempt's output after the retry)",
                event,
                position,
            )
        # cancellation drops the events in flight (a Retrying too) but never the terminal, so a
        # Cancelled may name an attempt whose Retrying this consumer never got; nothing else may
        lost_in_flight = isinstance(event, Cancelled)
        if event.attempt > current and event.attempt not in announced and not lost_in_flight:
            _fail(
                "3",
                f"in step {step!r}, attempt {event.attempt} starts without a Retrying "
                f"announcing it (next_attempt={event.attempt})",
                event,
                position,
            )
        if step not in self.attempt_of and event.attempt > 1 and event.attempt not in announced and not lost_in_flight:
            _fail("3", f"step {step!r} starts at attempt {event.attempt} without a Retrying", event, position)
        self.attempt_of[step] = event.attempt
        if isinstance(event, Retrying):
            if event.next_attempt <= event.attempt:
                _fail(
                    "3",
                    f"Retrying in step {step!r} announces attempt {event.next_attempt}, "
                    f"not after attempt {event.attempt}",
                    event,
                    position,
                )
            self.announced.setdefault(step, set()).add(event.next_attempt)

    def content(self, event: Event, position: int) -> None:
        """Invariants 2 and 3: the kept text, each tool's input pieces, a tool call run once."""
        step = event.step
        if isinstance(event, Retrying):
            self.pending.pop(step, None)  # the failed call's text is superseded
        elif isinstance(event, Delta):
            self.pending.setdefault(step, []).append(event.content)
        elif isinstance(event, Message):
            self.kept.setdefault(step, []).extend(self.pending.pop(step, ()))
        elif isinstance(event, ToolResult):
            seen = self.tool_results.setdefault(step, {})
            if event.tool_use_id in seen:
                _fail(
                    "3",
                    f"in step {step!r}, tool call {event.tool_use_id!r} ran twice (its first ToolResult "
                    f"is event #{seen[event.tool_use_id]}): a retry redid a finished tool call",
                    event,
                    position,
                )
            seen[event.tool_use_id] = position
        elif isinstance(event, ToolInputDelta):
            self.tool_json.setdefault((step, event.attempt, event.tool_use_id), []).append(event.partial_json)
        elif isinstance(event, ToolUse):
            self._tool_input(event, position)
        elif isinstance(event, Done):
            got = "".join([*self.kept.get(step, ()), *self.pending.get(step, ())])
            if got != event.response.text:
                _fail(
                    "2",
                    f"in step {step!r}, the Delta text kept up to attempt {event.attempt} is {got!r}, "
                    f"but Done.response.text is {event.response.text!r}",
                    event,
                    position,
                )

    def _tool_input(self, event: ToolUse, position: int) -> None:
        pieces = self.tool_json.get((event.step, event.attempt, event.tool_use_id))
        if pieces is None:
            return
        joined = "".join(pieces)
        where = f"the ToolInputDelta pieces of tool {event.tool_use_id!r} in step {event.step!r}"
        try:
            parsed = json.loads(joined)
        except ValueError:
            _fail("2", f"{where} join to {joined!r}, which is not JSON", event, position)
        if parsed != event.input:
            _fail("2", f"{where} parse to {parsed!r}, but ToolUse.input is {event.input!r}", event, position)

    def finish(self) -> None:
        """Invariant 1: every step that had events ended with a terminal."""
        for step, (seq, position) in self.last_seq.items():
            if step not in self.terminal_at:
                _fail(
                    "1",
                    f"step {step!r} has no terminal event (Done, Failed or Cancelled); "
                    f"its last event is seq {seq}",
                    self.events[position],
                    position,
                )


def _merge_key(event: Event) -> tuple:
    return (
        type(event),
        event.step,
        event.attempt,
        getattr(event, "index", 0),
        getattr(event, "tool_use_id", None),
    )


def _content(event: Event) -> str:
    return event.partial_json if isinstance(event, ToolInputDelta) else event.content  # type: ignore[attr-defined]  # a text or thinking delta here


def check_delivery(
    sent: Sequence[Event],
    received: Sequence[Event],
    *,
    policy: Literal["block", "coalesce"] = "block",
    complete: bool = True,
) -> None:
    """Check invariant 4: the receiver saw what was sent, in order.

    With ``block`` every event arrives unchanged. With ``coalesce`` consecutive
    deltas of the same step, attempt, block (and tool) may arrive merged into one
    whose content is their concatenation; nothing else is merged or dropped.

    Args:
        sent: What the producer sent to this consumer, in order.
        received: What the consumer received, in order.
        policy: The consumer's policy.
        complete: ``False`` when the stream was cancelled: then in-flight events
            may be missing, but what arrived must still be in order, and extra
            ``Cancelled`` terminals (delivered by the engine) are allowed.

    Raises:
        InvariantError: naming the first event that differs.
    """
    i = 0
    for position, got in enumerate(received):
        if not complete:
            # Skip events lost in flight up to the next one that can match.
            j = i
            while j < len(sent) and not (
                sent[j] == got or (isinstance(got, _DELTAS) and _merge_key(sent[j]) == _merge_key(got))
            ):
                j += 1
            if j == len(sent):
                if type(got).__name__ == "Cancelled":
                    continue
                _fail(
                    "4",
                    "the receiver got an event that was never sent, or got it out of order",
                    got,
                    position,
                )
            i = j
        if i >= len(sent):
            _fail("4", f"the receiver got more events than the {len(sent)} sent", got, position)
        want = sent[i]
        if policy == "coalesce" and isinstance(got, _DELTAS) and _merge_key(want) == _merge_key(got):
            target = _content(got)
            joined = ""
            while i < len(sent) and _merge_key(sent[i]) == _merge_key(got) and len(joined) < len(target):
                joined += _content(sent[i])
                i += 1
            if joined != target:
                _fail(
                    "4",
                    f"a merged {type(got).__name__} holds {target!r}, but the consecutive deltas "
                    f"sent there join to {joined!r} (step {got.step!r}, seq {got.seq})",
                    got,
                    position,
                )
            continue
        if got != want:
            _fail(
                "4",
                f"event #{position} received differs from event #{i} sent "
                f"({describe_event(want)}): dropped, reordered or altered",
                got,
                position,
            )
        i += 1
    if complete and i < len(sent):
        missing = sent[i]
        _fail(
            "4",
            f"the receiver never got event #{i} of the {len(sent)} sent and those after it",
            missing,
            i,
        )
