"""A Starlette app that streams a pipeline's events as server-sent events through ``sluiceway.aio``."""

from __future__ import annotations

import json
from typing import Any

from sluiceway.engine import Event
from sluiceway.specs import ClaudeOptions, ClaudeStep, Pipeline
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

import sluiceway.aio


def spec(deltas: int, delay_ms: int) -> Pipeline:
    """One live step against the fake Messages API: *deltas* deltas ``tokN ``, *delay_ms* apart."""
    model = f"fake:text?deltas={deltas}&delay_ms={delay_ms}&first_delay_ms=0"
    return Pipeline(name="sse", steps=(ClaudeStep(name="draft", prompt="go", claude_options=ClaudeOptions(model=model)),))


def sse(event: Event) -> str:
    """One server-sent event: the event type, then its fields as JSON (``seq`` for ordering)."""
    data = {"step": event.step, "seq": event.seq, "run_id": event.run_id}
    content = getattr(event, "content", None)
    if isinstance(content, str):
        data["content"] = content
    status = getattr(event, "status", None)
    if status is not None:
        data["status"] = status
    return f"event: {type(event).__name__}\ndata: {json.dumps(data)}\n\n"


def make_app(base_url: str, output_dir: str, seen: dict[str, list[Event]]) -> Starlette:
    """The app; *seen* gets each run's events as its handlers saw them (server side)."""

    async def stream(request: Request) -> StreamingResponse:
        deltas = int(request.query_params.get("deltas", "20"))
        delay_ms = int(request.query_params.get("delay_ms", "10"))
        key = request.query_params["key"]
        record = seen.setdefault(key, [])

        async def body() -> Any:
            async with sluiceway.aio.open_run(
                spec(deltas, delay_ms),
                mode="live",
                live_options={"api_key": "sk-fake", "base_url": base_url},
                output_dir=output_dir,
                handlers=[],
                on_event=record.append,
            ) as run:
                async for event in run.events:
                    yield sse(event)

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/runs", stream)])

