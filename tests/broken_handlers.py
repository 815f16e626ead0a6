"""Deliberately broken sample handlers: ``check_handler`` must catch each one.

Each reports the text it has shown through ``observed_text()``, the optional
protocol ``check_handler`` reads.
"""

from __future__ import annotations

import trio
from sluiceway.engine import TERMINAL_EVENTS, Delta, Event, Retrying


class DropsLastDeltaHandler:
    """Shows each delta at once, but on the terminal event "trims the trailing partial token":
    the last delta vanishes before close."""

    policy = "block"

    def __init__(self) -> None:
        self.shown: list[str] = []

    async def handle(self, event: Event) -> None:
        if isinstance(event, Delta):
            self.shown.append(event.content)
        elif isinstance(event, TERMINAL_EVENTS) and self.shown:
            self.shown.pop()  # the bug

    async def aclose(self) -> None:
        pass

    def observed_text(self) -> str:
        return "".join(self.shown)


class NeverFlushesHandler:
    """Buffers deltas and writes them out 16 characters at a time; aclose forgets the rest."""

    policy = "block"
    FLUSH_AT = 16

    def __init__(self) -> None:
        self.written = ""
        self.pending = ""

    async def handle(self, event: Event) -> None:
        if isinstance(event, Delta):
            self.pending += event.content
            if len(self.pending) >= self.FLUSH_AT:
                self.written += self.pending
                self.pending = ""

    async def aclose(self) -> None:
        pass  # the bug: self.pending is never written

    def observed_text(self) -> str:
        return self.written


class BlocksOnRetryHandler:
    """Waits for a "reset" that never comes when it sees a Retrying event."""

    policy = "block"

    def __init__(self) -> None:
        self.shown: list[str] = []

    async def handle(self, event: Event) -> None:
        if isinstance(event, Retrying):
            await trio.sleep_forever()  # the bug
        if isinstance(event, Delta):
            self.shown.append(event.content)

    async def aclose(self) -> None:
        pass

    def observed_text(self) -> str:
        return "".join(self.shown)


class GoodHandler:
    """A correct handler with ``handle_batch`` and ``observed_text``, for contrast."""

    policy = "coalesce"

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.closed = False

    async def handle(self, event: Event) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events) -> None:
        self.shown.extend(e.content for e in events if isinstance(e, Delta))

    async def aclose(self) -> None:
        self.closed = True

    def observed_text(self) -> str:
        return "".join(self.shown)


class GoodDirectHandler(GoodHandler):
    """``GoodHandler`` that also takes events synchronously (``handle_nowait``); counts both paths."""

    def __init__(self) -> None:
        super().__init__()
        self.direct = 0
        self.batches = 0

    def handle_nowait(self, event: Event) -> None:
        self.direct += 1
        if isinstance(event, Delta):
            self.shown.append(event.content)

    async def handle_batch(self, events) -> None:
        self.batches += 1
        await super().handle_batch(events)


class DirectForgetsDeltasHandler(GoodHandler):
    """Broken: its ``handle_nowait`` accepts deltas and drops them (only the actor's path keeps them)."""

    def handle_nowait(self, event: Event) -> None:
        pass


#: What ``collect`` received; ``tests/test_testing_builtin_handlers.py`` resets it per handler.
COLLECTED: list[Event] = []


def collect(event: Event) -> None:
    """A callback-handler target (``broken_handlers:collect``)."""
    COLLECTED.append(event)
