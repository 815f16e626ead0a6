"""Scripted providers and recording handlers for the engine tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import trio
from sluiceway.engine import (
    BlockStart,
    BlockStop,
    Event,
    InputJsonChunk,
    MessageDeltaInfo,
    MessageStart,
    MessageStop,
    ModelRequest,
    TextChunk,
    ThinkingChunk,
    Usage,
)

CONTENT_CHUNKS = (TextChunk, ThinkingChunk, InputJsonChunk)


def request(step: str = "s", model: str = "m-1", prompt: str = "hi") -> ModelRequest:
    return ModelRequest(step=step, model=model, messages=({"role": "user", "content": prompt},))


def call_script(
    blocks: Sequence[tuple],
    *,
    delay: float = 0.0,
    first_delay: float | None = None,
    stop_reason: str | None = None,
    model: str = "m-1",
    input_tokens: int = 10,
    output_tokens: int | None = None,
) -> list[Any]:
    """Provider events of one call; a float item means ``trio.sleep`` before the next item.

    *blocks*: ``("text", [pieces])``, ``("thinking", [pieces])``, ``("tool", id, name, [json pieces])``.
    """
    items: list[Any] = [MessageStart(model=model, usage=Usage(input_tokens=input_tokens, output_tokens=1))]
    n = 0
    first = True
    for index, block in enumerate(blocks):
        kind = block[0]
        if kind == "tool":
            items.append(BlockStart(index, "tool_use", tool_use_id=block[1], name=block[2]))
            pieces = block[3]
        else:
            items.append(BlockStart(index, kind))
            pieces = block[1]
        for piece in pieces:
            wait = first_delay if first and first_delay is not None else delay
            first = False
            if wait:
                items.append(float(wait))
            if kind == "text":
                items.append(TextChunk(index, piece))
            elif kind == "thinking":
                items.append(ThinkingChunk(index, piece))
            else:
                items.append(InputJsonChunk(index, piece))
            n += 1
        items.append(BlockStop(index))
    if stop_reason is None:
        stop_reason = "tool_use" if any(b[0] == "tool" for b in blocks) else "end_turn"
    items.append(
        MessageDeltaInfo(stop_reason=stop_reason, usage=Usage(output_tokens=output_tokens if output_tokens is not None else n))
    )
    items.append(MessageStop())
    return items


def split_json(value: Any, cuts: Sequence[int]) -> list[str]:
    """``json.dumps(value)`` cut at the given positions (clamped, deduplicated)."""
    raw = json.dumps(value)
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    return [raw[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


class _Stream:
    def __init__(self, provider: ScriptedProvider, script: Sequence[Any]) -> None:
        self.provider = provider
        self.items = iter(script)

    async def __aenter__(self) -> _Stream:
        await trio.lowlevel.checkpoint()
        self.provider.open_streams += 1  # after the checkpoint: a cancelled __aenter__ opens nothing
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.provider.open_streams -= 1
        self.provider.closed_streams += 1

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> Any:
        for item in self.items:
            if isinstance(item, float | int) and not isinstance(item, bool):
                await trio.sleep(item)
                continue
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, CONTENT_CHUNKS):
                self.provider.chunks += 1
                if self.provider.on_chunk is not None:
                    self.provider.on_chunk(self.provider.chunks)
            self.provider.produced.append((trio.current_time(), item))
            return item
        raise StopAsyncIteration


class ScriptedProvider:
    """Streams scripted calls in order: call *i* of the step plays ``scripts[i]``.

    Script items: provider events; a number = sleep that long first; an exception = raise it.
    ``on_chunk(n)`` is called before the n-th content chunk is handed over.
    """

    name = "scripted"

    def __init__(self, scripts: Sequence[Sequence[Any]], on_chunk: Callable[[int], None] | None = None) -> None:
        self.scripts = list(scripts)
        self.requests: list[ModelRequest] = []
        self.open_streams = 0
        self.closed_streams = 0
        self.chunks = 0
        self.on_chunk = on_chunk
        self.produced: list[tuple[float, Any]] = []
        self.closed = False

    def stream(self, request: ModelRequest) -> _Stream:
        self.requests.append(request)
        return _Stream(self, self.scripts[len(self.requests) - 1])

    async def aclose(self) -> None:
        self.closed = True


class Recorder:
    """A handler that records what it gets and when; *delay* seconds per event (virtual time)."""

    def __init__(self, *, delay: float = 0.0, batch: bool = True, policy: str = "block", fail_at: int | None = None,
                 fail_close: bool = False, direct: int | None = None) -> None:
        self.events: list[Event] = []
        self.times: list[float] = []
        self.delay = delay
        self.policy = policy
        self.close_count = 0
        self.after_close: list[Event] = []
        self.fail_at = fail_at
        self.fail_close = fail_close
        self.calls = 0
        self.direct = direct
        """None: no ``handle_nowait``; N: one that declines (``WouldBlock``) every Nth call (0: never)."""
        self.direct_calls = 0
        self.direct_taken = 0
        if batch:
            self.handle_batch = self._handle_batch
        if direct is not None:
            self.handle_nowait = self._handle_nowait

    def _record(self, event: Event) -> None:
        if self.close_count:
            self.after_close.append(event)
        if self.fail_at is not None and len(self.events) >= self.fail_at:
            raise RuntimeError(f"boom at {len(self.events)}")
        self.events.append(event)
        self.times.append(trio.current_time())

    def _handle_nowait(self, event: Event) -> None:
        self.direct_calls += 1
        if self.direct and self.direct_calls % self.direct == 0:
            raise trio.WouldBlock
        self._record(event)
        self.direct_taken += 1

    async def handle(self, event: Event) -> None:
        self.calls += 1
        self._record(event)
        if self.delay:
            await trio.sleep(self.delay)

    async def _handle_batch(self, events: Sequence[Event]) -> None:
        self.calls += 1
        for event in events:
            self._record(event)
        if self.delay:
            await trio.sleep(self.delay * len(events))

    async def aclose(self) -> None:
        self.close_count += 1
        if self.fail_close:
            raise RuntimeError("close failed")
