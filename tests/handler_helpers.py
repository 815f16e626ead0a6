"""Build event sequences and handler contexts for the handler tests."""

from __future__ import annotations

import io
import time
from typing import Any

from sluiceway.engine import (
    Cancelled,
    Delta,
    Done,
    Failed,
    HandlerContext,
    Message,
    Metrics,
    Response,
    Retrying,
    StepStarted,
    TextBlock,
    ThinkingDelta,
    ToolInputDelta,
    ToolResult,
    ToolUse,
    Usage,
)

#: A run start whose local wall time is exactly 12:34:56 (any time zone).
STARTED_WALL = time.mktime((2026, 1, 1, 12, 34, 56, 0, 0, -1))


def make_context(
    stdout: Any = None, *, step: str = "draft", output_dir: str = ".", **kwargs: Any
) -> HandlerContext:
    """A context writing to *stdout* (a fresh ``StringIO`` by default)."""
    return HandlerContext(
        run_id="run-1",
        step=step,
        name=kwargs.pop("name", "test"),
        pipeline=kwargs.pop("pipeline", "demo"),
        output_dir=output_dir,
        stdout=io.StringIO() if stdout is None else stdout,
        stderr=kwargs.pop("stderr", io.StringIO()),
        started_wall=STARTED_WALL,
        **kwargs,
    )


class Events:
    """An event factory that numbers ``seq`` per step, as the engine does."""

    def __init__(self, step: str = "draft", run_id: str = "run-1") -> None:
        self.step = step
        self.run_id = run_id
        self._seq: dict[str, int] = {}

    def _env(self, step: str | None, attempt: int, at: float) -> dict[str, Any]:
        step = self.step if step is None else step
        seq = self._seq.get(step, 0)
        self._seq[step] = seq + 1
        return {"run_id": self.run_id, "step": step, "attempt": attempt, "seq": seq, "at": at}

    def started(self, *, step=None, at=0.0, provider="mock", model="claude-test", step_type="claude"):
        return StepStarted(
            **self._env(step, 1, at), provider=provider, model=model, step_type=step_type
        )

    def delta(self, content, *, step=None, attempt=1, at=0.0, index=0):
        return Delta(**self._env(step, attempt, at), content=content, index=index)

    def thinking(self, content, *, step=None, attempt=1, at=0.0):
        return ThinkingDelta(**self._env(step, attempt, at), content=content)

    def tool_input(self, partial_json, *, step=None, attempt=1, at=0.0, tool_use_id="tu_1"):
        return ToolInputDelta(
            **self._env(step, attempt, at), tool_use_id=tool_use_id, partial_json=partial_json
        )

    def message(self, text, *, step=None, attempt=1, at=0.0, role="assistant"):
        return Message(
            **self._env(step, attempt, at),
            role=role,
            content=(TextBlock(text),),
            usage=Usage(10, 5) if role == "assistant" else None,
            stop_reason="end_turn" if role == "assistant" else None,
        )

    def tool_use(self, name="Read", input=None, *, step=None, attempt=1, at=0.0, tool_use_id="tu_1"):
        return ToolUse(
            **self._env(step, attempt, at),
            tool_use_id=tool_use_id,
            name=name,
            input={"file_path": "lib/app.py"} if input is None else input,
        )

    def tool_result(self, content, name="Read", *, step=None, attempt=1, at=0.0, is_error=False):
        return ToolResult(
            **self._env(step, attempt, at),
            tool_use_id="tu_1",
            name=name,
            content=content,
            is_error=is_error,
        )

    def retrying(self, reason="overloaded", *, step=None, attempt=1, at=0.0, delay=1.0, started=True):
        return Retrying(
            **self._env(step, attempt, at),
            reason=reason,
            delay=delay,
            output_may_have_started=started,
            next_attempt=attempt + 1,
        )

    def done(self, text="", *, step=None, attempt=1, at=0.0, messages=2, duration=1.234, **response):
        metrics = Metrics(
            time_to_first_token=0.12,
            duration=duration,
            output_tokens_per_second=45.25,
            message_count=messages,
            delta_count=3,
        )
        response.setdefault("usage", Usage(12, 34))
        response.setdefault("cost_usd", 0.0012)
        response.setdefault("model", "claude-test")
        return Done(
            **self._env(step, attempt, at),
            response=Response(text=text, metrics=metrics, stop_reason="end_turn", **response),
        )

    def failed(self, error, *, step=None, attempt=1, at=0.0):
        return Failed(**self._env(step, attempt, at), error=error, message=str(error))

    def cancelled(self, *, step=None, attempt=1, at=0.0):
        return Cancelled(**self._env(step, attempt, at))


# -- callback targets (imported by name, as a user's YAML would) ------------------

#: What the callback targets below received, in order; tests clear it first.
SEEN: list[tuple[str, Any]] = []


def sync_callback(event: Any) -> None:
    SEEN.append(("sync", event))


async def async_callback(event: Any) -> None:
    import trio

    await trio.sleep(0.5)  # virtual time: the handler awaits it
    SEEN.append(("async", event))


def failing_callback(event: Any) -> None:
    raise ValueError(f"callback refused {type(event).__name__}")


NOT_CALLABLE = 42


# -- custom handler classes (referenced by dotted path) ---------------------------


class KwargsHandler:
    """A user handler without ``Options``: built as ``cls(**stream_handler_opts)``."""

    def __init__(self, **opts: Any) -> None:
        self.opts = opts
        self.events: list[Any] = []

    async def handle(self, event: Any) -> None:
        self.events.append(event)

    async def aclose(self) -> None:
        pass
