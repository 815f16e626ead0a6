"""The ``debug`` handler: every event, one line each, with its type and fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal, TextIO

import attrs

from ..engine import Event, HandlerContext, HandlerPolicy
from ._base import SyncHandler, stderr_of, stdout_of

__all__ = ("DebugHandler", "describe_event")

_ENVELOPE = ("run_id", "step", "attempt", "seq", "at")


def describe_event(event: Event, max_field_len: int = 200) -> str:
    """One line for *event*: ``Delta step=draft attempt=1 seq=3 at=0.012 content='Hel' index=0``.

    The run id is left out (it is the same on every line of a run). Field values
    are ``repr``s, so newlines never break the line, cut to *max_field_len*
    characters with a trailing ``…``.
    """
    parts = [
        type(event).__name__,
        f"step={event.step}",
        f"attempt={event.attempt}",
        f"seq={event.seq}",
        f"at={event.at:.3f}",
    ]
    for field in attrs.fields(type(event)):
        if field.name in _ENVELOPE:
            continue
        value = repr(getattr(event, field.name))
        if len(value) > max_field_len:
            value = value[: max(max_field_len - 1, 0)] + "…"
        parts.append(f"{field.name}={value}")
    return " ".join(parts)


class DebugHandler(SyncHandler):
    """Print every event on one line, start and terminal events included.

    ::

        StepStarted step=draft attempt=1 seq=0 at=0.000 provider='mock' model='claude-sonnet-4' step_type='claude'
        Delta step=draft attempt=1 seq=1 at=0.012 content='Hel' index=0
    """

    policy: ClassVar[HandlerPolicy] = "block"
    """Every event is shown as it was: deltas are never merged."""

    @attrs.frozen(kw_only=True)
    class Options:
        """``stream_handler_opts`` of the ``debug`` handler."""

        file: Literal["stderr", "stdout"] = "stderr"
        """Where the lines go."""
        max_field_len: int = attrs.field(default=200, validator=attrs.validators.ge(1))
        """Longest field value shown; longer ones are cut with ``…``."""

    def __init__(self, options: DebugHandler.Options, context: HandlerContext) -> None:
        self.options = options
        self.context = context
        self._closed = False

    def _stream(self) -> TextIO:
        if self.options.file == "stdout":
            return stdout_of(self.context)
        return stderr_of(self.context)

    def _handle_events(self, events: Sequence[Event]) -> None:
        """Print one line per event, with one write and one flush.

        Blocks only in the stream's write (policy ``block``: a stalled stream stalls
        the step). No checkpoint; cancellation takes effect between batches.
        """
        text = "".join(describe_event(e, self.options.max_field_len) + "\n" for e in events)
        stream = self._stream()
        stream.write(text)
        stream.flush()

    async def aclose(self) -> None:
        """Flush. Idempotent; the stream itself stays open (not ours)."""
        if not self._closed:
            self._closed = True
            self._stream().flush()
