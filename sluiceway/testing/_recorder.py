"""``StreamingRecorder``: a handler that records every event for assertions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs

from ..engine import Delta, Event, Message, Retrying, ToolResult
from ._invariants import check_invariants

__all__ = ("AttemptRecord", "StreamingRecorder")


@attrs.frozen
class AttemptRecord:
    """What one attempt of a step produced, as the recorder saw it."""

    number: int
    """The attempt number (1..)."""
    events: tuple[Event, ...]
    """The attempt's events, in order."""
    text: str
    """The attempt's concatenated ``Delta`` text."""
    superseded: bool
    """True when a ``Retrying`` ended this attempt (its failed call's output is superseded;
    the calls it finished before that stay in the response)."""


class StreamingRecorder:
    """A stream handler (policy ``block``) that keeps every event it receives.

    Attach it to steps (``handlers=`` of ``run_virtual``/``sluiceway.run``, or by
    its dotted path ``sluiceway.testing.StreamingRecorder`` in YAML) and assert on
    what arrived. One recorder may serve several steps: events are kept in
    arrival order and ``aclose`` calls are counted.

    Example::

        recorder = StreamingRecorder()
        ...  # run a pipeline with handlers=[recorder]
        assert recorder.text("draft") == "Hello"
        recorder.check_invariants()
    """

    policy: ClassVar[str] = "block"

    def __init__(self) -> None:
        self._events: list[Event] = []
        self.close_count = 0
        """How many times ``aclose`` was called."""

    # -- the Handler protocol -------------------------------------------------

    async def handle(self, event: Event) -> None:
        """Record *event*. Never blocks."""
        self._events.append(event)

    async def handle_batch(self, events: Sequence[Event]) -> None:
        """Record every event of *events*, in order. Never blocks."""
        self._events.extend(events)

    def handle_nowait(self, event: Event) -> None:
        """Record *event* as the step sends it (the engine calls it while nothing waits)."""
        self._events.append(event)

    async def aclose(self) -> None:
        """Count the close; the recorded events stay readable."""
        self.close_count += 1

    # -- assertions -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``aclose`` was called."""
        return self.close_count > 0

    def steps(self) -> list[str]:
        """The step paths seen, in order of their first event (run events excluded)."""
        return list(dict.fromkeys(e.step for e in self._events if e.step))

    def events(self, step: str | None = None, kind: type | str | None = None) -> list[Event]:
        """The recorded events, optionally only those of *step* and of *kind*.

        Args:
            step: A step path; ``None`` for every step.
            kind: An event class (``Delta``) or its name (``"Delta"``); subclasses match.
        """
        out = self._events
        if step is not None:
            out = [e for e in out if e.step == step]
        if kind is not None:
            if isinstance(kind, str):
                out = [e for e in out if any(c.__name__ == kind for c in type(e).__mro__)]
            else:
                out = [e for e in out if isinstance(e, kind)]
        return list(out)

    def _one_step(self, step: str | None) -> str:
        if step is not None:
            return step
        steps = self.steps()
        if len(steps) != 1:
            raise ValueError(f"name the step: the recorder saw {len(steps)} steps {steps!r}")
        return steps[0]

    def attempts(self, step: str | None = None) -> list[AttemptRecord]:
        """The attempts of *step* in order, each with its events and text.

        Args:
            step: The step path; may be omitted when only one step was recorded.
        """
        step = self._one_step(step)
        by_attempt: dict[int, list[Event]] = {}
        superseded: set[int] = set()
        for event in self._events:
            if event.step != step:
                continue
            by_attempt.setdefault(event.attempt, []).append(event)
            if isinstance(event, Retrying):
                superseded.add(event.attempt)
        return [
            AttemptRecord(
                number=n,
                events=tuple(evs),
                text="".join(e.content for e in evs if isinstance(e, Delta)),
                superseded=n in superseded,
            )
            for n, evs in sorted(by_attempt.items())
        ]

    def text(self, step: str | None = None, *, attempt: int | None = None) -> str:
        """The ``Delta`` text *step* kept (or the text of *attempt*).

        This is what ``Done.response.text`` holds: every finished call's text,
        whichever attempt made it, and none of a failed call's (a ``Retrying``
        supersedes the deltas since the step's last ``Message`` or
        ``ToolResult``). Returns ``""`` for a step that produced no text.

        Args:
            step: The step path; may be omitted when only one step was recorded.
            attempt: An attempt number: that attempt's ``Delta`` text, as it arrived.
        """
        if attempt is None:
            step = self._one_step(step)
            kept: list[str] = []
            pending: list[str] = []
            for event in self._events:
                if event.step != step:
                    continue
                if isinstance(event, Delta):
                    pending.append(event.content)
                elif isinstance(event, Message | ToolResult):
                    kept += pending
                    pending = []
                elif isinstance(event, Retrying):
                    pending = []
            return "".join(kept + pending)
        records = self.attempts(step)
        for record in records:
            if record.number == attempt:
                return record.text
        return ""

    def observed_text(self) -> str:
        """Every ``Delta`` received, concatenated (the ``check_handler`` text protocol)."""
        return "".join(e.content for e in self._events if isinstance(e, Delta))

    def check_invariants(self) -> None:
        """Check DESIGN.md's invariants 1-4 on what was recorded (see ``check_invariants``).

        Raises:
            InvariantError: explaining the first broken rule.
        """
        check_invariants(self._events)

    def clear(self) -> None:
        """Forget every recorded event and the close count."""
        self._events.clear()
        self.close_count = 0
