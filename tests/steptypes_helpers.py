"""Run a spec through the executor and collect every event of the run (for the step-type tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from sluiceway.engine import Event, ModelRequest
from sluiceway.providers import MockProvider
from sluiceway.specs import loads

from sluiceway._execution import RunOptions, execute
from sluiceway._result import RunResult


def spec_of(yaml_text: str, source: Path | None = None) -> Any:
    spec = loads(yaml_text)
    return spec


async def run_spec(spec: Any, tmp_path: Path, **options: Any) -> tuple[RunResult, list[Event]]:
    """``execute`` *spec* with output under *tmp_path*; return the result and the run's events, in order."""
    options.setdefault("output_dir", tmp_path / "out")
    options.setdefault("workspace", tmp_path / "ws")
    await trio.Path(options["workspace"]).mkdir(parents=True, exist_ok=True)
    send, receive = trio.open_memory_channel[Event](1000)
    events: list[Event] = []
    async with trio.open_nursery() as nursery:

        async def collect() -> None:
            async with receive:
                async for event in receive:
                    events.append(event)

        nursery.start_soon(collect)
        result = await execute(spec, RunOptions(**options), send_events=send)
    return result, events


def of(events: Sequence[Event], step: str) -> list[Event]:
    return [e for e in events if e.step == step]


def names(events: Sequence[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


class RecordingMock(MockProvider):
    """The mock provider, recording every request (and the most calls running at once)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests: list[ModelRequest] = []

    def stream(self, request: ModelRequest) -> Any:
        self.requests.append(request)
        return super().stream(request)
