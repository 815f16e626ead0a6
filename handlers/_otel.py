"""The ``otel`` handler: runs, steps, model calls and tool calls as OpenTelemetry GenAI spans.

Needs the ``sluiceway[otel]`` extra (``opentelemetry-api``); this module is
imported only when a spec or a caller names the handler, so a run that does
not use it never imports OpenTelemetry.

The mapping (attribute names are written as strings: the constants of
``opentelemetry-semantic-conventions`` for GenAI are deprecated):

* ``RunStarted`` .. ``RunFinished``: ``invoke_workflow {pipeline}`` (INTERNAL);
* a step (``StepStarted`` .. its terminal event): ``invoke_agent {step}``
  (INTERNAL), under its parent step for sub-steps (``batch[3]`` under ``batch``,
  ``par.a`` under ``par``), else under the run;
* each model call of each attempt (a tool loop makes several per attempt):
  ``chat {model}`` (CLIENT, ``gen_ai.provider.name="anthropic"``), ended by its
  assistant ``Message``; a call a ``Retrying`` supersedes ends there, with
  ``error.type`` and a ``sluiceway.superseded`` span event saying why;
* each tool call (``ToolUse`` .. ``ToolResult``): ``execute_tool {name}``.

Why explicit parents and event times: a handler may run in a task started
before the caller's span (its own context has no current span) and receives
events after the fact, in batches. So every span is started with
``tracer.start_span(..., context=<parent>, start_time=<event time>)`` and ended
with the event's time, never with ``start_as_current_span`` (which would read
the handler task's context, and across a ``yield`` detaches the wrong token,
open-telemetry/opentelemetry-python#2606). A ``trio.Cancelled`` never passes
through a span here: cancellation arrives as the ``Cancelled`` event, which
sets ``error.type`` and status ERROR.

Where the run's parent comes from: the context current when the handler is
constructed (or the ``parent`` given). Construction happens where the run is
started: the engine builds a step's handlers in the run's task, which inherits
the caller's context, and ``OtelHandler.for_run`` is called by the caller.
Reading the context at ``RunStarted`` instead would read the task that handles
the event, which for a long-lived handler is not the caller's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar, Final

import attrs

from ..engine import (
    Cancelled,
    Delta,
    Done,
    Event,
    Failed,
    HandlerContext,
    HandlerPolicy,
    Message,
    Retrying,
    RunFinished,
    RunStarted,
    StepStarted,
    TextBlock,
    ThinkingBlock,
    ThinkingDelta,
    ToolInputDelta,
    ToolResult,
    ToolResultBlock,
    ToolUse,
    ToolUseBlock,
    Usage,
)
from ._base import SyncHandler

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the otel handler needs OpenTelemetry: pip install 'sluiceway[otel]'"
    ) from exc

__all__ = (
    "CHUNK_TIME_BUCKETS",
    "DURATION_BUCKETS",
    "OtelHandler",
    "TOKEN_BUCKETS",
)

#: ``gen_ai.client.token.usage`` buckets, from the GenAI metrics convention (powers of 4).
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
#: ``gen_ai.client.operation.duration`` buckets (seconds, doubling from 10 ms), from the convention.
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
#: ``time_to_first_chunk`` and ``time_per_output_chunk`` buckets: the convention gives both
#: the duration's boundaries.
CHUNK_TIME_BUCKETS: Final = DURATION_BUCKETS

#: The provider the chat spans name: every sluiceway provider speaks the Messages API.
PROVIDER_NAME: Final = "anthropic"
#: ``error.type`` of a step, call or run that was cancelled.
CANCELLED: Final = "cancelled"
#: ``error.type`` of spans still open when the handler closes without their end event.
INCOMPLETE: Final = "incomplete"

_SpanKind = trace.SpanKind
_StatusCode = trace.StatusCode


def _parent_path(path: str) -> str | None:
    """``batch`` for ``batch[3]``, ``par`` for ``par.a``, ``None`` for a top-level step."""
    if path.endswith("]") and "[" in path:
        return path[: path.rindex("[")]
    if "." in path:
        return path.rsplit(".", 1)[0]
    return None


def _error_type(error: BaseException) -> str:
    return type(error).__qualname__


def _reason_type(reason: str) -> str:
    """A low-cardinality ``error.type`` from a retry reason (``overloaded_error: ...``)."""
    head = reason.split(":", 1)[0].strip()
    return head if head and " " not in head else "retry"


def _input_tokens(usage: Usage) -> int:
    # The convention's input token count includes cached tokens; the Messages API's excludes them.
    return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens


def _message_parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "content": block.text})
        elif isinstance(block, ThinkingBlock):
            parts.append({"type": "reasoning", "content": block.thinking})
        elif isinstance(block, ToolUseBlock):
            parts.append({"type": "tool_call", "id": block.id, "name": block.name, "arguments": block.input})
        elif isinstance(block, ToolResultBlock):
            parts.append({"type": "tool_call_response", "id": block.tool_use_id, "response": block.content})
    return parts


@attrs.define
class _Call:
    """One model call being traced: from its start until its assistant message."""

    start: float
    """Seconds since the run's start when the call began."""
    attempt: int
    """The attempt it belongs to."""
    span: Any = None
    """The ``chat`` span, made at the call's first event."""
    first_chunk: float | None = None
    """When its first content delta came."""
    last_chunk: float | None = None
    """When its latest content delta came."""


@attrs.define
class _Step:
    """What the handler holds for one step being traced."""

    span: Any
    """The ``invoke_agent`` span."""
    model: str | None
    """The model asked for."""
    step_type: str
    """The spec's step type."""
    call: _Call | None = None
    """The model call in progress (or about to start), if any."""
    tools: dict[str, Any] = attrs.field(factory=dict)
    """Open ``execute_tool`` spans by tool_use id."""
    has_children: bool = False
    """True once a sub-step started under it (a composite step makes no model calls itself)."""
    calls: int = 0
    """Model calls traced so far."""
    input_messages: list[dict[str, Any]] = attrs.field(factory=list)
    """With ``capture_content``: the conversation so far (tool results), for the next call."""


class OtelHandler(SyncHandler):
    """Map a run's events to OpenTelemetry GenAI spans and metrics.

    As a step's ``stream_handler`` it traces that step (``invoke_agent``, its
    ``chat`` and ``execute_tool`` spans, and its sub-steps). Fed a whole run's
    events (``OtelHandler.for_run()`` with ``open_run``), it also makes the
    ``invoke_workflow`` span over them. Spans go to the global tracer provider
    unless one is given, metrics to the global meter provider likewise.

    Message content (``gen_ai.input.messages``, ``gen_ai.output.messages``,
    tool arguments and results) is recorded only with ``capture_content``; no
    option ever records an API key, which no event carries.
    """

    policy: ClassVar[HandlerPolicy] = "block"
    """Lossless: every delta is a chunk of ``time_per_output_chunk``; merged deltas would hide some."""

    @attrs.frozen(kw_only=True)
    class Options:
        """``stream_handler_opts`` of the ``otel`` handler."""

        capture_content: bool = False
        """Record message content and tool arguments/results on the spans (opt-in: it may be private)."""

    def __init__(
        self,
        options: OtelHandler.Options,
        context: HandlerContext,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        parent: Any = None,
    ) -> None:
        self.options = options
        self.context = context
        self._parent = parent if parent is not None else otel_context.get_current()
        self._origin = context.started_wall
        self._tracer = trace.get_tracer("sluiceway", tracer_provider=tracer_provider)
        meter = otel_metrics.get_meter("sluiceway", meter_provider=meter_provider)
        self._token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=CHUNK_TIME_BUCKETS,
        )
        self._tpoc = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk", unit="s",
            description="Time per output chunk, for each chunk after the first.",
            explicit_bucket_boundaries_advisory=CHUNK_TIME_BUCKETS,
        )
        self._run_span: Any = None
        self._run_error: str | None = None
        self._steps: dict[str, _Step] = {}
        self._last_at = 0.0
        self._closed = False

    @classmethod
    def for_run(
        cls,
        *,
        capture_content: bool = False,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        parent: Any = None,
    ) -> OtelHandler:
        """A handler for a whole run's event stream (``open_run().events``), built outside a spec.

        The run's wall-clock origin comes from ``RunStarted``; the parent is *parent*, else
        the context current now (so call it inside the span the run should sit under).
        """
        context = HandlerContext(run_id="", step="", name="otel")
        return cls(
            cls.Options(capture_content=capture_content),
            context,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            parent=parent if parent is not None else otel_context.get_current(),
        )

    # ------------------------------------------------------------------ the handler protocol

    def _handle_events(self, events: Sequence[Event]) -> None:
        """Start and end spans for *events*, in order. Never blocks."""
        for event in events:
            self._last_at = max(self._last_at, event.at)
            kind = type(event)
            if kind is Delta or kind is ThinkingDelta or kind is ToolInputDelta:
                self._chunk(event)
            elif kind is Message:
                self._message(event)  # type: ignore[arg-type]
            elif kind is StepStarted:
                self._step_started(event)  # type: ignore[arg-type]
            elif kind is ToolUse:
                self._tool_use(event)  # type: ignore[arg-type]
            elif kind is ToolResult:
                self._tool_result(event)  # type: ignore[arg-type]
            elif kind is Retrying:
                self._retrying(event)  # type: ignore[arg-type]
            elif kind is Done or kind is Failed or kind is Cancelled:
                self._terminal(event)
            elif kind is RunStarted:
                self._run_started(event)  # type: ignore[arg-type]
            elif kind is RunFinished:
                self._run_finished(event)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        """End every span still open (marked ``incomplete``) at the latest event's time. Idempotent."""
        if self._closed:
            return
        self._closed = True
        end = self._ns(self._last_at)
        for path in sorted(self._steps, key=len, reverse=True):  # children before parents
            step = self._steps.pop(path)
            self._end_call(step, self._last_at, INCOMPLETE, "the stream ended before the call did")
            for span in step.tools.values():
                self._fail(span, INCOMPLETE, "the stream ended before the tool's result")
                span.end(end_time=end)
            self._fail(step.span, INCOMPLETE, "the stream ended before the step's terminal event")
            step.span.end(end_time=end)
        if self._run_span is not None:
            self._fail(self._run_span, INCOMPLETE, "the stream ended before RunFinished")
            self._run_span.end(end_time=end)
            self._run_span = None

    # ------------------------------------------------------------------ helpers

    def _ns(self, at: float) -> int:
        """An event's ``at`` as epoch nanoseconds, from the run's wall-clock origin."""
        return int(round((self._origin + at) * 1e9))

    @staticmethod
    def _fail(span: Any, error_type: str, description: str) -> None:
        span.set_attribute("error.type", error_type)
        span.set_status(trace.Status(_StatusCode.ERROR, description))

    def _parent_context(self, path: str) -> Any:
        parent = _parent_path(path)
        while parent is not None:
            step = self._steps.get(parent)
            if step is not None:
                step.has_children = True
                return trace.set_span_in_context(step.span, self._parent)
            parent = _parent_path(parent)
        if self._run_span is not None:
            return trace.set_span_in_context(self._run_span, self._parent)
        return self._parent

    def _metric_attributes(self, step: _Step, error_type: str | None = None) -> dict[str, Any]:
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": PROVIDER_NAME}
        if step.model:
            attributes["gen_ai.request.model"] = step.model
        if error_type is not None:
            attributes["error.type"] = error_type
        return attributes

    # ------------------------------------------------------------------ the run

    def _run_started(self, event: RunStarted) -> None:
        if event.started_wall:
            self._origin = event.started_wall
        self._run_span = self._tracer.start_span(
            f"invoke_workflow {event.pipeline}",
            context=self._parent,
            kind=_SpanKind.INTERNAL,
            start_time=self._ns(event.at),
            attributes={
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": event.pipeline,
                "sluiceway.run_id": event.run_id,
            },
        )

    def _run_finished(self, event: RunFinished) -> None:
        span, self._run_span = self._run_span, None
        if span is None:
            return
        span.set_attribute("sluiceway.status", event.status)
        if event.status == "cancelled":
            self._fail(span, CANCELLED, "the run was cancelled")
        elif event.status == "failed":
            self._fail(span, self._run_error or "failed", "a step failed")
        span.end(end_time=self._ns(event.at))

    # ------------------------------------------------------------------ steps

    def _step_started(self, event: StepStarted) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": event.step,
            "gen_ai.provider.name": PROVIDER_NAME,
            "sluiceway.provider": event.provider,
            "sluiceway.step_type": event.step_type,
        }
        if event.model:
            attributes["gen_ai.request.model"] = event.model
        span = self._tracer.start_span(
            f"invoke_agent {event.step}",
            context=self._parent_context(event.step),
            kind=_SpanKind.INTERNAL,
            start_time=self._ns(event.at),
            attributes=attributes,
        )
        step = _Step(span=span, model=event.model, step_type=event.step_type)
        if event.step_type != "python":
            step.call = _Call(start=event.at, attempt=event.attempt)
        self._steps[event.step] = step

    def _terminal(self, event: Event) -> None:
        step = self._steps.pop(event.step, None)
        if step is None:
            return
        end = self._ns(event.at)
        if isinstance(event, Done):
            response = event.response
            span = step.span
            usage = response.usage
            span.set_attribute("gen_ai.usage.input_tokens", _input_tokens(usage))
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            if response.model:
                span.set_attribute("gen_ai.response.model", response.model)
            if response.stop_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [response.stop_reason])
            if response.cost_usd is not None:
                span.set_attribute("sluiceway.cost_usd", response.cost_usd)
            metrics = response.metrics
            if metrics.time_to_first_token is not None:
                span.set_attribute("sluiceway.time_to_first_token", metrics.time_to_first_token)
            span.set_attribute("sluiceway.backpressure_wait", metrics.backpressure_wait)
            span.set_attribute("sluiceway.status", response.status)
            self._end_call(step, event.at, None, "")  # a call left open (no closing message)
            error_type, description = None, ""
        elif isinstance(event, Failed):
            error_type = _error_type(event.error)
            description = event.message or str(event.error) or error_type
            self._run_error = error_type
            step.span.record_exception(event.error, timestamp=end)
        else:
            error_type, description = CANCELLED, "the step was cancelled"
        if error_type is not None:
            self._end_call(step, event.at, error_type, description)
            for span in step.tools.values():
                self._fail(span, error_type, description)
                span.end(end_time=end)
            self._fail(step.span, error_type, description)
        step.tools.clear()
        step.span.end(end_time=end)

    # ------------------------------------------------------------------ model calls

    def _open_call(self, step: _Step, at: float, attempt: int) -> _Call:
        """The step's current call, its ``chat`` span started (at the call's start) if not yet."""
        call = step.call
        if call is None:
            call = step.call = _Call(start=at, attempt=attempt)
        if call.span is None:
            model = step.model or "unknown"
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": PROVIDER_NAME,
                "gen_ai.request.model": model,
                "gen_ai.request.stream": True,
                "sluiceway.attempt": call.attempt,
                "sluiceway.turn": step.calls,
            }
            if self.options.capture_content and step.input_messages:
                attributes["gen_ai.input.messages"] = json.dumps(step.input_messages)
            call.span = self._tracer.start_span(
                f"chat {model}",
                context=trace.set_span_in_context(step.span, self._parent),
                kind=_SpanKind.CLIENT,
                start_time=self._ns(call.start),
                attributes=attributes,
            )
            step.calls += 1
        return call

    def _end_call(self, step: _Step, at: float, error_type: str | None, description: str) -> None:
        """End the step's call, if one was started or is due (a leaf step waiting for its first token)."""
        call, step.call = step.call, None
        if call is None:
            return
        if call.span is None:
            if error_type is None or step.has_children:
                return  # nothing was asked of a model, or a composite step's own (empty) stream
            step.call = call
            call = self._open_call(step, at, call.attempt)
            step.call = None
        span = call.span
        duration = max(0.0, at - call.start)
        if error_type is not None:
            self._fail(span, error_type, description)
        self._duration.record(duration, self._metric_attributes(step, error_type))
        span.end(end_time=self._ns(at))

    def _chunk(self, event: Event) -> None:
        step = self._steps.get(event.step)
        if step is None:
            return
        call = self._open_call(step, event.at, event.attempt)
        if call.first_chunk is None:
            call.first_chunk = event.at
            ttfc = max(0.0, event.at - call.start)
            call.span.set_attribute("gen_ai.response.time_to_first_chunk", ttfc)
            self._ttfc.record(ttfc, self._metric_attributes(step))
        else:
            self._tpoc.record(max(0.0, event.at - (call.last_chunk or event.at)), self._metric_attributes(step))
        call.last_chunk = event.at

    def _message(self, event: Message) -> None:
        step = self._steps.get(event.step)
        if step is None:
            return
        if event.role != "assistant":
            if self.options.capture_content:
                step.input_messages.append({"role": "user", "parts": _message_parts(event)})
            step.call = _Call(start=event.at, attempt=event.attempt)  # the next call starts now
            return
        call = self._open_call(step, event.at, event.attempt)
        span = call.span
        attributes = self._metric_attributes(step)
        if event.usage is not None:
            usage = event.usage
            span.set_attribute("gen_ai.usage.input_tokens", _input_tokens(usage))
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cache_read_input_tokens)
            span.set_attribute("gen_ai.usage.cache_creation.input_tokens", usage.cache_creation_input_tokens)
            self._token_usage.record(_input_tokens(usage), {**attributes, "gen_ai.token.type": "input"})
            self._token_usage.record(usage.output_tokens, {**attributes, "gen_ai.token.type": "output"})
        if event.stop_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [event.stop_reason])
        if step.model:
            span.set_attribute("gen_ai.response.model", step.model)
        if self.options.capture_content:
            output = {"role": "assistant", "parts": _message_parts(event), "finish_reason": event.stop_reason or ""}
            span.set_attribute("gen_ai.output.messages", json.dumps([output], default=str))
            step.input_messages.append({"role": "assistant", "parts": output["parts"]})
        self._end_call(step, event.at, None, "")
        # What follows (tool results, then the next call) starts from here.
        step.call = _Call(start=event.at, attempt=event.attempt)

    def _retrying(self, event: Retrying) -> None:
        step = self._steps.get(event.step)
        if step is None:
            return
        error_type = _reason_type(event.reason)
        call = step.call
        if call is not None and call.span is None and not step.has_children:
            call = self._open_call(step, event.at, event.attempt)  # failed before its first chunk: still a call
        if call is not None and call.span is not None:
            call.span.add_event(
                "sluiceway.superseded",
                {
                    "sluiceway.reason": event.reason,
                    "sluiceway.next_attempt": event.next_attempt,
                    "sluiceway.delay": event.delay,
                    "sluiceway.output_may_have_started": event.output_may_have_started,
                },
                timestamp=self._ns(event.at),
            )
            call.span.set_attribute("sluiceway.superseded", True)
        self._end_call(step, event.at, error_type, f"superseded: {event.reason}")
        step.call = _Call(start=event.at + event.delay, attempt=event.next_attempt)

    # ------------------------------------------------------------------ tools

    def _tool_use(self, event: ToolUse) -> None:
        step = self._steps.get(event.step)
        if step is None:
            return
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": event.name,
            "gen_ai.tool.call.id": event.tool_use_id,
            "gen_ai.tool.type": "function",
        }
        if self.options.capture_content:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(event.input, default=str)
        step.tools[event.tool_use_id] = self._tracer.start_span(
            f"execute_tool {event.name}",
            context=trace.set_span_in_context(step.span, self._parent),
            kind=_SpanKind.INTERNAL,
            start_time=self._ns(event.at),
            attributes=attributes,
        )

    def _tool_result(self, event: ToolResult) -> None:
        step = self._steps.get(event.step)
        if step is None:
            return
        span = step.tools.pop(event.tool_use_id, None)
        if span is None:
            return
        if self.options.capture_content:
            span.set_attribute("gen_ai.tool.call.result", event.content)
        if event.is_error:
            self._fail(span, "tool_error", event.content[:200])
        span.end(end_time=self._ns(event.at))
