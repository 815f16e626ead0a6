"""The ``buffer`` handler: the step's events in memory, bounded, for Python callers."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import ClassVar

import attrs

from ..engine import (
    Delta,
    Event,
    HandlerContext,
    HandlerPolicy,
    Message,
    Retrying,
    StepStarted,
    ToolResult,
)
from ._base import SyncHandler

__all__ = ("BufferHandler",)


class BufferHandler(SyncHandler):
    """Keep the last ``max_size`` events in memory.

    When full, the oldest event is dropped and counted in ``dropped``. On a
    ``Retrying`` the failed call's events (that step's events since its last
    ``Message`` or ``ToolResult``; a retry repeats that call alone, so the
    finished calls before it stay) are removed, unless ``keep_superseded``: the
    buffer then never holds output the final response does not contain. The
    ``StepStarted`` and ``Retrying`` events themselves are kept as markers; they
    carry no output. Read it from Python with ``events``, ``text()``,
    ``dropped`` and ``superseded``.
    """

    policy: ClassVar[HandlerPolicy] = "block"
    """Lossless: every event is kept as it was sent."""

    @attrs.frozen(kw_only=True)
    class Options:
        """``stream_handler_opts`` of the ``buffer`` handler."""

        max_size: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
        """The most events kept; the oldest are dropped beyond it."""
        keep_superseded: bool = False
        """Keep the events of the failed calls a retry superseded."""

    def __init__(self, options: BufferHandler.Options, context: HandlerContext) -> None:
        self.options = options
        self.context = context
        self._events: deque[Event] = deque()
        self._dropped = 0
        self._superseded = 0
        self._closed = False

    @property
    def events(self) -> list[Event]:
        """A copy of the buffered events, oldest first."""
        return list(self._events)

    @property
    def dropped(self) -> int:
        """Events dropped because the buffer was full."""
        return self._dropped

    @property
    def superseded(self) -> int:
        """Events removed because a retry superseded their call."""
        return self._superseded

    @property
    def closed(self) -> bool:
        """True once the engine closed the handler (the step's stream ended)."""
        return self._closed

    def text(self, step: str | None = None) -> str:
        """The buffered ``Delta`` texts concatenated, for every step or only *step*."""
        return "".join(
            e.content
            for e in self._events
            if isinstance(e, Delta) and (step is None or e.step == step)
        )

    def _handle_events(self, events: Sequence[Event]) -> None:
        """Keep *events*, in order. Never blocks."""
        for event in events:
            self._keep(event)

    async def aclose(self) -> None:
        """Mark the buffer closed; the events stay readable. Idempotent."""
        self._closed = True

    def _keep(self, event: Event) -> None:
        if isinstance(event, Retrying) and not self.options.keep_superseded:
            self._drop_superseded(event.step)
        if len(self._events) >= self.options.max_size:
            self._events.popleft()
            self._dropped += 1
        self._events.append(event)

    def _drop_superseded(self, step: str) -> None:
        events = list(self._events)
        start = 0  # after the step's last finished call (its Message, then its ToolResults)
        for position in range(len(events) - 1, -1, -1):
            event = events[position]
            if event.step == step and isinstance(event, Message | ToolResult):
                start = position + 1
                break
        kept = deque(
            e
            for position, e in enumerate(events)
            if position < start or e.step != step or isinstance(e, StepStarted | Retrying)
        )
        self._superseded += len(self._events) - len(kept)
        self._events = kept
