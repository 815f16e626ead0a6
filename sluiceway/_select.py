"""``open_run(..., select=...)``: which events reach the run's event stream.

The filter sits on the send side of the stream, so an event the reader did
not select never enters the channel: it takes no buffer slot, wakes no reader
and exerts no backpressure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import trio

from .engine import Event

__all__ = ("SelectArg", "SelectingSendChannel", "Selection", "step_matches")

SelectArg = str | type[Event] | Iterable[str | type[Event]] | None


def step_matches(step: str, name: str) -> bool:
    """True when *step* is the step *name* or one of its sub-steps (``batch[3]``, ``par.a``)."""
    if not step.startswith(name):
        return False
    return len(step) == len(name) or step[len(name)] in "[."


@attrs.frozen
class Selection:
    """Step names and event types; an event passes when it matches both parts that are given."""

    steps: tuple[str, ...] = ()
    """Step names; each selects its sub-steps too. Empty: every step."""
    types: tuple[type[Event], ...] = ()
    """Event classes (a base class selects its subclasses). Empty: every type."""

    @classmethod
    def parse(cls, select: SelectArg) -> Selection | None:
        """A ``Selection`` from ``select=``: a step name, an event class, or a list of these.

        Raises:
            TypeError: an item is neither a string nor an ``Event`` subclass.
        """
        if select is None:
            return None
        items = [select] if isinstance(select, str | type) else list(select)
        steps: list[str] = []
        types: list[type[Event]] = []
        for item in items:
            if isinstance(item, str):
                steps.append(item)
            elif isinstance(item, type) and issubclass(item, Event):
                types.append(item)
            else:
                raise TypeError(f"select: expected step names or Event classes, got {item!r}")
        return cls(tuple(steps), tuple(types))

    def __call__(self, event: Event) -> bool:
        """Whether *event* passes. Run events (``RunStarted``, ``RunFinished``) have no
        step: only the types can leave them out."""
        if self.types and not isinstance(event, self.types):
            return False
        if not self.steps or not event.step:
            return True
        return any(step_matches(event.step, name) for name in self.steps)


class SelectingSendChannel:
    """A run's event stream seen through a ``Selection``: unselected events are dropped here.

    Duck-types the part of ``trio.MemorySendChannel`` that the executor and
    the engine use (``send``, ``send_nowait``, ``clone``, ``close``,
    ``statistics``, ``with``); closing it closes the channel it wraps.
    """

    __slots__ = ("_inner", "_selects")

    def __init__(self, inner: trio.MemorySendChannel[Event], selects: Selection) -> None:
        self._inner = inner
        self._selects = selects

    def send_nowait(self, event: Event) -> None:
        """Send a selected event without blocking (``trio.WouldBlock`` when full); drop the others."""
        if self._selects(event):
            self._inner.send_nowait(event)

    async def send(self, event: Event) -> None:
        """Send a selected event, blocking while the channel is full; drop the others (a checkpoint)."""
        if self._selects(event):
            await self._inner.send(event)
        else:
            await trio.lowlevel.checkpoint()

    def clone(self) -> SelectingSendChannel:
        """Another send side of the same channel, through the same selection."""
        return SelectingSendChannel(self._inner.clone(), self._selects)

    def close(self) -> None:
        """Close this send side (synchronously, like ``MemorySendChannel.close``)."""
        self._inner.close()

    async def aclose(self) -> None:
        """Close this send side."""
        await self._inner.aclose()

    def statistics(self) -> Any:
        """The wrapped channel's statistics."""
        return self._inner.statistics()

    def __enter__(self) -> SelectingSendChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
