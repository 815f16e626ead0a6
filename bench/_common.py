"""What several benchmarks share: the request, the no-op handlers, the SDK client."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def bench_request(model: str, prompt: str = "bench") -> Any:
    """A one-message ``ModelRequest`` for *model* (the fake server reads its scenario from it)."""
    from sluiceway.engine import ModelRequest

    return ModelRequest(step="bench", model=model, messages=({"role": "user", "content": prompt},), max_tokens=64)


class NoOpHandler:
    """A handler that does nothing (with a batch fast path, like the built-ins)."""

    async def handle(self, event: Any) -> None:
        pass

    async def handle_batch(self, events: Sequence[Any]) -> None:
        pass

    async def aclose(self) -> None:
        pass


class NoOpDirectHandler(NoOpHandler):
    """``NoOpHandler`` with ``handle_nowait``: takes events in the sender's task while its actor is parked."""

    def handle_nowait(self, event: Any) -> None:
        pass


class FirstDelta:
    """Records ``time.perf_counter()`` at the first ``Delta`` it is handed."""

    def __init__(self) -> None:
        self.at: float | None = None

    async def handle(self, event: Any) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[Any]) -> None:
        if self.at is None:
            from sluiceway.engine import Delta

            for event in events:
                if type(event) is Delta:
                    self.at = time.perf_counter()
                    break

    async def aclose(self) -> None:
        pass


def buffer_handler() -> Any:
    """The built-in ``buffer`` handler, with its defaults."""
    from sluiceway.engine import HandlerContext
    from sluiceway.handlers._buffer import BufferHandler

    return BufferHandler(BufferHandler.Options(), HandlerContext(run_id="bench", step="bench", name="buffer"))


def sdk_client(url: str, connections: int = 10) -> Any:
    """An ``AsyncAnthropic`` on *url*, without retries, pooling at most *connections*."""
    import anthropic
    import httpx2

    http = httpx2.AsyncClient(
        limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=httpx2.Timeout(60.0),
    )
    return anthropic.AsyncAnthropic(api_key="sk-bench", base_url=url, max_retries=0, http_client=http)
