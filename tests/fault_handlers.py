"""Handlers that fail on purpose (raise, hang, lag), for the handler-fault and fault-injection tests.

Importable by dotted path (``fault_handlers.RaisesOnClose``) from YAML specs. Each
counts its ``aclose`` calls in ``closed`` and records what it was handed in ``events``.
"""

from __future__ import annotations

import trio
from sluiceway.engine import TERMINAL_EVENTS, Delta, Event


class FaultHandler:
    """Records events; fails as its class says. ``fault_at``: the event index where ``handle`` fails."""

    policy = "block"
    fault_at = 2

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = 0

    async def handle(self, event: Event) -> None:
        if len(self.events) == self.fault_at:
            await self.fault()
        self.events.append(event)

    async def fault(self) -> None:
        pass

    async def aclose(self) -> None:
        self.closed += 1

    def text(self) -> str:
        return "".join(e.content for e in self.events if isinstance(e, Delta))

    def terminals(self) -> list[Event]:
        return [e for e in self.events if isinstance(e, TERMINAL_EVENTS)]


class RaisesInHandle(FaultHandler):
    async def fault(self) -> None:
        raise RuntimeError("handle failed on purpose")


class HangsInHandle(FaultHandler):
    async def fault(self) -> None:
        await trio.sleep_forever()


class RaisesOnClose(FaultHandler):
    async def aclose(self) -> None:
        self.closed += 1
        raise RuntimeError("aclose failed on purpose")


class HangsOnClose(FaultHandler):
    async def aclose(self) -> None:
        self.closed += 1
        await trio.sleep_forever()


class SlowHandler(FaultHandler):
    delay = 0.01

    async def handle(self, event: Event) -> None:
        await trio.sleep(self.delay)
        self.events.append(event)


class HangsAtOnce(HangsInHandle):
    fault_at = 0
