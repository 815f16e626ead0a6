"""The ``otel`` handler: the span tree, names, kinds, attributes, errors and metrics of real runs.

Runs a mock pipeline (a tool loop, a retried step, a step cancelled mid-stream)
through the engine, feeds every event to ``OtelHandler`` and reads what the
OpenTelemetry SDK's in-memory exporter and metric reader received.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import pytest
import trio

pytest.importorskip("opentelemetry.sdk", reason="the otel tests need opentelemetry-sdk (the test extra)")

import trio.lowlevel
from opentelemetry import baggage, trace  # noqa: E402
from opentelemetry import context as otel_context  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402
from sluiceway.engine import (  # noqa: E402
    Cancelled,
    Delta,
    Done,
    Event,
    Failed,
    HandlerContext,
    Message,
    Metrics,
    Response,
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
from sluiceway.handlers import OtelHandler  # noqa: E402
from sluiceway.handlers._otel import DURATION_BUCKETS, TOKEN_BUCKETS, _parent_path, _reason_type  # noqa: E402

import sluiceway  # noqa: E402
from sluiceway._execution import RunOptions, execute  # noqa: E402

MODEL = "claude-sonnet-4-5"

SPEC = """
name: demo
steps:
  - name: look
    type: claude
    prompt: "read a.txt"
    claude_options: {allowed_tools: [Read]}
    mock:
      tool_calls: [{name: Read, input: {file_path: "a.txt"}}]
      response: "done reading"
      delay_ms: 2
  - name: answer
    type: claude_robust
    prompt: "hello?"
    retry_config: {max_retries: 2, base_delay_ms: 10}
    mock: {response: "hello world", error: overloaded, error_after: 2, error_attempts: 1, chunk_size: 3, delay_ms: 2}
  - name: slow
    type: claude
    prompt: "take your time"
    mock: {response: "one two three four five six seven eight nine ten", delay_ms: 50}
"""

#: The duration buckets the GenAI convention gives, written out (not read from the handler).
DOUBLING_FROM_10_MS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


@pytest.fixture
def otel() -> tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    return tracer_provider, exporter, meter_provider, reader


async def _run_and_cancel_slow(handler: OtelHandler, tmp_path: Any) -> tuple[list[Event], Any]:
    """Run SPEC; cancel the run at the third delta of ``slow``. Every event goes to *handler*."""
    spec = sluiceway.loads(SPEC)
    events: list[Event] = []
    result: list[Any] = []
    send, receive = trio.open_memory_channel[Event](64)
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            result.append(await execute(spec, RunOptions(output_dir=tmp_path, workspace=tmp_path), send_events=send))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        slow_deltas = 0
        async for event in receive:
            events.append(event)
            handler.handle_nowait(event)
            if isinstance(event, Delta) and event.step == "slow":
                slow_deltas += 1
                if slow_deltas == 3:
                    scope.cancel()
    await handler.aclose()
    return events, result


def _by_name(spans: list[Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def _histograms(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


async def test_a_run_maps_to_the_genai_span_tree_and_metrics(otel: Any, tmp_path: Any, autojump_clock: Any) -> None:
    tracer_provider, exporter, meter_provider, reader = otel
    handler = OtelHandler.for_run(tracer_provider=tracer_provider, meter_provider=meter_provider)
    events, _ = await _run_and_cancel_slow(handler, tmp_path)
    started = events[0]
    assert type(started).__name__ == "RunStarted" and started.started_wall > 0
    spans = exporter.get_finished_spans()
    names = _by_name(spans)

    # -- the tree: one trace, the workflow at the root, steps under it, calls and tools under steps
    (run_span,) = names["invoke_workflow demo"]
    assert run_span.parent is None and run_span.kind is SpanKind.INTERNAL
    assert {s.context.trace_id for s in spans} == {run_span.context.trace_id}
    steps = {s.attributes["gen_ai.agent.name"]: s for s in spans if s.name.startswith("invoke_agent ")}
    assert set(steps) == {"look", "answer", "slow"}
    for name, span in steps.items():
        assert span.name == f"invoke_agent {name}"
        assert span.kind is SpanKind.INTERNAL
        assert span.parent.span_id == run_span.context.span_id
        assert span.attributes["gen_ai.operation.name"] == "invoke_agent"
    chats = names[f"chat {MODEL}"]
    children = {
        name: [c for c in chats if c.parent.span_id == steps[name].context.span_id] for name in steps
    }
    # look: a tool loop (two model calls) and one tool call between them
    assert len(children["look"]) == 2
    (tool,) = names["execute_tool Read"]
    assert tool.parent.span_id == steps["look"].context.span_id
    assert tool.attributes["gen_ai.tool.name"] == "Read"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    first, second = sorted(children["look"], key=lambda s: s.start_time)
    assert first.end_time <= tool.start_time <= tool.end_time <= second.start_time
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert second.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    # a tool's error result (the file is missing) is an error of that span only
    assert tool.attributes["error.type"] == "tool_error" and tool.status.status_code is StatusCode.ERROR
    assert steps["look"].status.status_code is StatusCode.UNSET

    for chat in chats:
        assert chat.kind is SpanKind.CLIENT
        assert chat.attributes["gen_ai.provider.name"] == "anthropic"
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.request.model"] == MODEL
        assert chat.attributes["gen_ai.request.stream"] is True
        assert "gen_ai.input.messages" not in chat.attributes  # content is opt-in
        assert "gen_ai.output.messages" not in chat.attributes
    for chat in children["look"]:
        assert chat.attributes["gen_ai.usage.output_tokens"] > 0
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert chat.attributes["gen_ai.response.time_to_first_chunk"] >= 0

    # answer: attempt 1 superseded (why, recorded), attempt 2 answers
    superseded, final = sorted(children["answer"], key=lambda s: s.start_time)
    assert superseded.attributes["sluiceway.attempt"] == 1 and final.attributes["sluiceway.attempt"] == 2
    assert superseded.attributes["error.type"] == "overloaded_error"
    assert superseded.status.status_code is StatusCode.ERROR
    assert superseded.attributes["sluiceway.superseded"] is True
    (why,) = [e for e in superseded.events if e.name == "sluiceway.superseded"]
    assert "Overloaded" in why.attributes["sluiceway.reason"] and why.attributes["sluiceway.next_attempt"] == 2
    assert superseded.end_time <= final.start_time
    assert "error.type" not in final.attributes and "error.type" not in steps["answer"].attributes

    # slow: cancelled mid-stream; its call, the step and the run say so
    (cancelled_call,) = children["slow"]
    for span in (cancelled_call, steps["slow"], run_span):
        assert span.attributes["error.type"] == "cancelled"
        assert span.status.status_code is StatusCode.ERROR

    # -- times are the events' times on the run's wall clock, not the exporter's clock
    origin = int(round(started.started_wall * 1e9))
    assert run_span.start_time == origin
    by_step = {e.step: e for e in events if type(e).__name__ == "StepStarted"}
    for name, span in steps.items():
        assert span.start_time == int(round((started.started_wall + by_step[name].at) * 1e9))
    assert run_span.end_time == int(round((started.started_wall + events[-1].at) * 1e9))

    # -- the four metrics, with the convention's buckets
    metrics = _histograms(reader)
    usage = metrics["gen_ai.client.token.usage"]
    assert usage.unit == "{token}"
    points = usage.data.data_points
    assert {p.attributes["gen_ai.token.type"] for p in points} == {"input", "output"}
    for point in points:
        assert tuple(point.explicit_bounds) == TOKEN_BUCKETS
        assert point.attributes["gen_ai.provider.name"] == "anthropic"
        assert point.attributes["gen_ai.operation.name"] == "chat"
    # one input and one output value per answered call: 2 (look) + 1 (answer)
    assert sum(p.count for p in points) == 2 * 3
    output_sum = sum(p.sum for p in points if p.attributes["gen_ai.token.type"] == "output")
    assert output_sum == sum(c.attributes.get("gen_ai.usage.output_tokens", 0) for c in chats)
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    by_error = {p.attributes.get("error.type"): p for p in duration.data.data_points}
    assert set(by_error) == {None, "overloaded_error", "cancelled"}
    assert by_error[None].count == 3 and by_error["overloaded_error"].count == 1 and by_error["cancelled"].count == 1
    for point in duration.data.data_points:
        assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    ttfc = metrics["gen_ai.client.operation.time_to_first_chunk"]
    (point,) = ttfc.data.data_points
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    assert point.count == 5  # every call that streamed: look x2, answer x2, slow
    tpoc = metrics["gen_ai.client.operation.time_per_output_chunk"]
    (point,) = tpoc.data.data_points
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    content_deltas = sum(1 for e in events if type(e).__name__ in ("Delta", "ThinkingDelta", "ToolInputDelta"))
    assert point.count == content_deltas - 5  # every chunk after each call's first


async def test_content_is_recorded_only_when_asked(otel: Any, tmp_path: Any, autojump_clock: Any) -> None:
    tracer_provider, exporter, meter_provider, _ = otel
    handler = OtelHandler.for_run(capture_content=True, tracer_provider=tracer_provider, meter_provider=meter_provider)
    await _run_and_cancel_slow(handler, tmp_path)
    names = _by_name(exporter.get_finished_spans())
    answered = [c for c in names[f"chat {MODEL}"] if "gen_ai.output.messages" in c.attributes]
    outputs = [json.loads(c.attributes["gen_ai.output.messages"]) for c in answered]
    texts = ["".join(p.get("content", "") for p in o[0]["parts"] if p["type"] == "text") for o in outputs]
    assert "hello world" in texts and "done reading" in texts
    second_look = [c for c in answered if "gen_ai.input.messages" in c.attributes]
    assert second_look, "the call after a tool result sees the conversation so far"
    (tool,) = names["execute_tool Read"]
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"file_path": "a.txt"}
    assert "not found" in tool.attributes["gen_ai.tool.call.result"]
    for span in exporter.get_finished_spans():
        for value in span.attributes.values():
            assert "sk-ant" not in str(value)


async def test_a_long_lived_handler_parents_each_run_under_its_callers_span(
    otel: Any, tmp_path: Any, autojump_clock: Any
) -> None:
    """The handler's task starts before any span; the caller's span still becomes the run's parent."""
    tracer_provider, exporter, meter_provider, _ = otel
    tracer = tracer_provider.get_tracer("caller")
    send_work, receive_work = trio.open_memory_channel[Any](0)

    async def long_lived_handler_task() -> None:
        # started before the caller's span: this task's own context has no current span
        assert not trace.get_current_span().get_span_context().is_valid
        async for handler, events in receive_work:
            for event in events:
                await handler.handle(event)
            await handler.aclose()

    caller_spans = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_lived_handler_task)
        await trio.lowlevel.checkpoint()
        for i in range(2):
            with tracer.start_as_current_span(f"caller {i}") as caller:
                caller_spans.append(caller)
                handler = OtelHandler.for_run(tracer_provider=tracer_provider, meter_provider=meter_provider)
                async with sluiceway.open_run(_two_steps(), output_dir=tmp_path, workspace=tmp_path) as run:
                    events = [event async for event in run.events]
            await send_work.send((handler, events))  # handled outside the caller's span, in another task
        send_work.close()
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name.startswith("invoke_workflow ")]
    assert len(runs) == 2
    for caller, run_span in zip(caller_spans, sorted(runs, key=lambda s: s.start_time), strict=True):
        assert run_span.parent.span_id == caller.get_span_context().span_id
        assert run_span.context.trace_id == caller.get_span_context().trace_id
        for span in spans:
            if span.context.trace_id == run_span.context.trace_id and not span.name.startswith("caller"):
                assert span.parent is not None
                assert span is run_span or span.parent.span_id != caller.get_span_context().span_id


#: The providers ``StepOtel`` sends to (set by the test that uses it).
_PROVIDERS: dict[str, Any] = {}


class StepOtel(OtelHandler):
    """``otel`` with the test's providers: the built-in one uses the global providers."""

    def __init__(self, options: OtelHandler.Options, context: HandlerContext) -> None:
        super().__init__(
            options, context, tracer_provider=_PROVIDERS["tracer"], meter_provider=_PROVIDERS["meter"]
        )


async def test_as_a_step_handler_it_traces_steps_under_the_callers_span(otel: Any, tmp_path: Any) -> None:
    """As each step's handler (built in the run's task) the caller's current span is the parent."""
    tracer_provider, exporter, meter_provider, _ = otel
    _PROVIDERS.update(tracer=tracer_provider, meter=meter_provider)
    tracer = tracer_provider.get_tracer("caller")
    with tracer.start_as_current_span("caller") as caller:
        result = await sluiceway.run(
            _two_steps(), output_dir=tmp_path, workspace=tmp_path, handlers="test_handlers_otel.StepOtel"
        )
    assert result.status == "ok"
    spans = exporter.get_finished_spans()
    agents = [s for s in spans if s.name.startswith("invoke_agent ")]
    assert sorted(s.name for s in agents) == ["invoke_agent one", "invoke_agent two"]
    for agent in agents:
        assert agent.parent.span_id == caller.get_span_context().span_id
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(chats) == 2
    assert {c.parent.span_id for c in chats} == {a.context.span_id for a in agents}


def test_the_handler_is_a_registered_builtin_with_options() -> None:
    from sluiceway._registry import build_handlers, resolve_handler

    assert resolve_handler("otel") is OtelHandler
    context = HandlerContext(run_id="r", step="s", name="otel")
    (handler,) = build_handlers(["otel"], {"capture_content": True}, lambda ref: context)
    assert handler.options.capture_content is True


def _two_steps() -> Any:
    return sluiceway.loads(
        """
name: two
steps:
  - {name: one, type: claude, prompt: "first", mock: {response: "one done"}}
  - {name: two, type: claude, prompt: "second", mock: {response: "two done"}}
"""
    )


def test_the_documented_console_example_prints_the_spans_and_metrics(tmp_path: Any) -> None:
    """``python examples/otel_console.py`` (docs/observability.md): the real SDK, console exporters."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "otel_console.py"
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for name in (
        '"name": "invoke_workflow step_robust"',
        '"name": "invoke_agent answer"',
        '"name": "chat claude-sonnet-4-5"',
        '"name": "gen_ai.client.operation.time_to_first_chunk"',
    ):
        assert name in done.stdout
    assert "run ok" in done.stderr


# -- the exact record of a scripted stream: every span's name, kind, parent, times, status, attributes
#    and events, and every metric point, compared whole (a changed key, value or boundary fails).

_ORIGIN = 1000.0


def _scripted_events() -> list[Event]:
    """A run with a tool loop, two retries, a batch with a failed sub-step, a cancelled step, a
    python step and a step left open: times are binary fractions so every nanosecond is exact."""
    r = "run-1"
    usage = Usage(input_tokens=10, output_tokens=5, cache_creation_input_tokens=2, cache_read_input_tokens=3)
    return [
        RunStarted(run_id=r, step="", at=0.0, pipeline="demo", started_wall=_ORIGIN),
        StepStarted(run_id=r, step="look", at=0.25, provider="mock", model=MODEL, step_type="claude"),
        ThinkingDelta(run_id=r, step="look", at=0.5, content="hmm"),
        Delta(run_id=r, step="look", at=0.75, content="let me"),
        ToolInputDelta(run_id=r, step="look", at=1.25, tool_use_id="t1", partial_json="{}"),
        Message(
            run_id=r, step="look", at=1.5, role="assistant", usage=usage, stop_reason="tool_use",
            content=(ThinkingBlock("hmm"), TextBlock("let me"), ToolUseBlock("t1", "Read", {"file_path": "a"})),
        ),
        ToolUse(run_id=r, step="look", at=1.75, tool_use_id="t1", name="Read", input={"file_path": "a"}),
        ToolResult(run_id=r, step="look", at=2.0, tool_use_id="t1", name="Read", content="no such file", is_error=True),
        ToolResult(run_id=r, step="look", at=2.0, tool_use_id="t9", name="Read", content="unknown id"),
        Message(run_id=r, step="look", at=2.0, role="user", content=(ToolResultBlock("t1", "no such file", True),)),
        Delta(run_id=r, step="look", at=2.5, content="done"),
        Message(run_id=r, step="look", at=3.0, role="assistant", content=(TextBlock("done"),), stop_reason="end_turn"),
        Done(
            run_id=r, step="look", at=3.25,
            response=Response(
                text="done", usage=usage, cost_usd=0.5, stop_reason="end_turn", model="claude-x",
                metrics=Metrics(time_to_first_token=0.5, backpressure_wait=0.125), status="ok",
            ),
        ),
        StepStarted(run_id=r, step="answer", at=4.0, provider="mock", model=None, step_type="claude_robust"),
        Retrying(
            run_id=r, step="answer", at=4.5, reason="overloaded_error: busy", delay=0.25,
            output_may_have_started=False, next_attempt=2,
        ),
        Delta(run_id=r, step="answer", attempt=2, at=5.0, content="he"),
        Retrying(
            run_id=r, step="answer", attempt=2, at=5.5, reason="connection reset by peer", delay=0.5,
            output_may_have_started=True, next_attempt=3,
        ),
        Delta(run_id=r, step="answer", attempt=3, at=6.5, content="hel"),
        Delta(run_id=r, step="answer", attempt=3, at=7.0, content="lo"),
        Delta(run_id=r, step="answer", attempt=3, at=8.0, content="!"),
        Done(run_id=r, step="answer", attempt=3, at=8.5, response=Response(text="hello!")),
        StepStarted(run_id=r, step="batch", at=9.0, provider="mock", model=MODEL, step_type="batch"),
        StepStarted(run_id=r, step="batch[0]", at=9.25, provider="mock", model=MODEL, step_type="claude"),
        StepStarted(run_id=r, step="batch[1]", at=9.25, provider="mock", model=MODEL, step_type="claude"),
        Delta(run_id=r, step="batch[0]", at=9.5, content="a"),
        Done(run_id=r, step="batch[0]", at=9.75, response=Response(text="a")),
        Failed(run_id=r, step="batch[1]", at=10.0, error=ValueError("bad row"), message="row 1 is bad"),
        Retrying(
            run_id=r, step="batch", at=10.25, reason="", delay=0.0, output_may_have_started=False, next_attempt=2,
        ),
        Failed(run_id=r, step="batch", at=10.5, error=RuntimeError(), message=""),
        StepStarted(run_id=r, step="par", at=11.0, provider="mock", model=None, step_type="parallel"),
        StepStarted(run_id=r, step="par.a", at=11.0, provider="mock", model=MODEL, step_type="claude"),
        ToolUse(run_id=r, step="par.a", at=11.25, tool_use_id="t2", name="Bash", input={"cmd": "ls"}),
        Cancelled(run_id=r, step="par.a", at=11.5),
        StepStarted(run_id=r, step="par.x.y", at=11.5, provider="mock", model=MODEL, step_type="claude"),
        Done(run_id=r, step="par.x.y", at=11.625, response=Response()),
        Done(run_id=r, step="par", at=11.75, response=Response()),
        Done(run_id=r, step="gone", at=11.75, response=Response()),
        # python steps make no model call until they stream one (a call then starts at its first event)
        StepStarted(run_id=r, step="py", at=12.0, provider="python", model=None, step_type="python"),
        Message(
            run_id=r, step="py", attempt=2, at=12.0625, role="assistant",
            content=(ToolUseBlock("t5", "Write", {"path": PurePosixPath("o.txt")}),),
        ),
        Done(run_id=r, step="py", at=12.25, response=Response(status="ok")),
        StepStarted(run_id=r, step="pyfail", at=12.0, provider="python", model=None, step_type="python"),
        Failed(run_id=r, step="pyfail", at=12.125, error=KeyError("k")),
        StepStarted(run_id=r, step="py2", at=12.25, provider="python", model=None, step_type="python"),
        Delta(run_id=r, step="py2", attempt=2, at=12.3125, content="x"),
        Message(run_id=r, step="py2", attempt=2, at=12.375, role="assistant", content=(TextBlock("x"),)),
        ToolUse(run_id=r, step="py2", attempt=2, at=12.40625, tool_use_id="t6", name="Bash", input={}),
        ToolResult(run_id=r, step="py2", attempt=2, at=12.4375, tool_use_id="t6", name="Bash", content="e" * 250, is_error=True),
        Delta(run_id=r, step="py2", attempt=2, at=12.453125, content="y"),
        Message(run_id=r, step="py2", attempt=2, at=12.46875, role="assistant", content=(TextBlock("y"),)),
        Done(run_id=r, step="py2", attempt=2, at=12.484375, response=Response()),
        # left open: ended by aclose, children first
        StepStarted(run_id=r, step="hang", at=12.5, provider="mock", model=MODEL, step_type="claude"),
        ToolUse(run_id=r, step="hang", at=12.75, tool_use_id="t3", name="Grep", input={"path": PurePosixPath("x")}),
        StepStarted(run_id=r, step="hang.sub", at=12.75, provider="mock", model=MODEL, step_type="claude"),
        StepStarted(run_id=r, step="wait", at=12.875, provider="python", model=None, step_type="python"),
        Delta(run_id=r, step="gone", at=13.0, content="no step"),
        RunFinished(run_id=r, step="", at=13.0, status="failed"),
    ]


def _span_record(spans: list[Any]) -> list[dict[str, Any]]:
    names = {span.context.span_id: span.name for span in spans}
    origin = int(_ORIGIN * 1e9)
    return [
        {
            "name": span.name,
            "kind": span.kind.name,
            "parent": names.get(span.parent.span_id) if span.parent is not None else None,
            "start": span.start_time - origin,
            "end": span.end_time - origin,
            "status": (span.status.status_code.name, span.status.description),
            "attributes": dict(span.attributes),
            "events": [(e.name, e.timestamp - origin, dict(e.attributes)) for e in span.events],
        }
        for span in spans
        if span.name != "caller"  # the test's own span: its times are the wall clock's
    ]


def _metric_record(reader: InMemoryMetricReader) -> dict[str, Any]:
    return {
        name: {
            "unit": metric.unit,
            "description": metric.description,
            "points": sorted(
                (
                    (
                        sorted(point.attributes.items()), tuple(point.explicit_bounds),
                        tuple(point.bucket_counts), point.sum, point.count, point.min, point.max,
                    )
                    for point in metric.data.data_points
                ),
                key=repr,
            ),
        }
        for name, metric in _histograms(reader).items()
    }


class _BaggageSeen(SpanProcessor):
    """Records, per span started, the ``tenant`` baggage of the parent context it was started with."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self._started: dict[int, Any] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self._started[span.context.span_id] = baggage.get_baggage("tenant", parent_context)

    def on_end(self, span: Any) -> None:
        if span.name != "caller":
            self.seen.append((span.name, self._started[span.context.span_id]))


def test_parent_paths_and_retry_reasons() -> None:
    assert [_parent_path(p) for p in ("batch[3]", "b[0][1]", "a[1].b", "par.a", "par.a.b", "look", "x]")] == [
        "batch", "b[0]", "a[1]", "par", "par.a", None, None,
    ]
    assert [_reason_type(r) for r in ("overloaded_error: busy: again", "api_error", " : x", "rate limited")] == [
        "overloaded_error", "api_error", "retry", "retry",
    ]


async def _feed(handler: OtelHandler, events: list[Event]) -> None:
    for event in events:
        handler.handle_nowait(event)
    await handler.aclose()
    await handler.aclose()  # idempotent: nothing ends twice


async def test_a_scripted_run_records_exact_spans_and_metrics(otel: Any) -> None:
    tracer_provider, exporter, meter_provider, reader = otel
    baggage_seen = _BaggageSeen()
    tracer_provider.add_span_processor(baggage_seen)
    root = tracer_provider.get_tracer("test").start_span("caller")
    # The caller's context, baggage and all, is what every span's parent context extends.
    parent = baggage.set_baggage("tenant", "t1", trace.set_span_in_context(root))

    def handler(capture_content: bool) -> OtelHandler:
        return OtelHandler.for_run(
            capture_content=capture_content, tracer_provider=tracer_provider, meter_provider=meter_provider,
            parent=parent,
        )

    await _feed(handler(True), _scripted_events())
    # Each way a run can end, on its own: the run span's status and error.type.
    for status in ("ok", "cancelled", "failed", None):
        events: list[Event] = [RunStarted(run_id="r", step="", at=0.5, pipeline=f"p-{status}", started_wall=_ORIGIN)]
        if status is not None:
            events.append(RunFinished(run_id="r", step="", at=1.5, status=status))
        if status == "ok":
            # Built directly (as the engine builds a step's handler): the parent is the context
            # current at construction, not the one current when events arrive.
            token = otel_context.attach(parent)
            try:
                direct = OtelHandler(
                    OtelHandler.Options(), HandlerContext(run_id="r", step="", name="otel"),
                    tracer_provider=tracer_provider, meter_provider=meter_provider,
                )
            finally:
                otel_context.detach(token)
            await _feed(direct, events)
            continue
        made = handler(False)
        assert made.context == HandlerContext(run_id="", step="", name="otel")
        await _feed(made, events)
    root.end()
    spans = list(exporter.get_finished_spans())
    assert _span_record(spans) == _EXPECTED_SPANS
    assert _metric_record(reader) == _EXPECTED_METRICS
    assert baggage_seen.seen == [
        (span["name"], "t1") for span in _EXPECTED_SPANS
    ]
    # The instrumentation scope of every span and metric is the library's name.
    assert {span.instrumentation_scope.name for span in spans if span.name != "caller"} == {"sluiceway"}
    assert [
        scope.scope.name for resource in reader.get_metrics_data().resource_metrics for scope in resource.scope_metrics
    ] == ["sluiceway"]


# What the handler records for the runs above (every time is relative to _ORIGIN, in nanoseconds).
_EXPECTED_SPANS: Any = [{'name': 'chat claude-sonnet-4-5',
  'kind': 'CLIENT',
  'parent': 'invoke_agent look',
  'start': 250000000,
  'end': 1500000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 1,
                 'sluiceway.turn': 0,
                 'gen_ai.response.time_to_first_chunk': 0.25,
                 'gen_ai.usage.input_tokens': 15,
                 'gen_ai.usage.output_tokens': 5,
                 'gen_ai.usage.cache_read.input_tokens': 3,
                 'gen_ai.usage.cache_creation.input_tokens': 2,
                 'gen_ai.response.finish_reasons': ('tool_use',),
                 'gen_ai.response.model': 'claude-sonnet-4-5',
                 'gen_ai.output.messages': '[{"role": "assistant", "parts": [{"type": "reasoning", "content": '
                                           '"hmm"}, {"type": "text", "content": "let me"}, {"type": "tool_call", '
                                           '"id": "t1", "name": "Read", "arguments": {"file_path": "a"}}], '
                                           '"finish_reason": "tool_use"}]'},
  'events': []},
 {'name': 'execute_tool Read',
  'kind': 'INTERNAL',
  'parent': 'invoke_agent look',
  'start': 1750000000,
  'end': 2000000000,
  'status': ('ERROR', 'no such file'),
  'attributes': {'gen_ai.operation.name': 'execute_tool',
                 'gen_ai.tool.name': 'Read',
                 'gen_ai.tool.call.id': 't1',
                 'gen_ai.tool.type': 'function',
                 'gen_ai.tool.call.arguments': '{"file_path": "a"}',
                 'gen_ai.tool.call.result': 'no such file',
                 'error.type': 'tool_error'},
  'events': []},
 {'name': 'chat claude-sonnet-4-5',
  'kind': 'CLIENT',
  'parent': 'invoke_agent look',
  'start': 2000000000,
  'end': 3000000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 1,
                 'sluiceway.turn': 1,
                 'gen_ai.input.messages': '[{"role": "assistant", "parts": [{"type": "reasoning", "content": '
                                          '"hmm"}, {"type": "text", "content": "let me"}, {"type": "tool_call", '
                                          '"id": "t1", "name": "Read", "arguments": {"file_path": "a"}}]}, '
                                          '{"role": "user", "parts": [{"type": "tool_call_response", "id": "t1", '
                                          '"response": "no such file"}]}]',
                 'gen_ai.response.time_to_first_chunk': 0.5,
                 'gen_ai.response.finish_reasons': ('end_turn',),
                 'gen_ai.response.model': 'claude-sonnet-4-5',
                 'gen_ai.output.messages': '[{"role": "assistant", "parts": [{"type": "text", "content": "done"}], '
                                           '"finish_reason": "end_turn"}]'},
  'events': []},
 {'name': 'invoke_agent look',
  'kind': 'INTERNAL',
  'parent': 'invoke_workflow demo',
  'start': 250000000,
  'end': 3250000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'look',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'mock',
                 'sluiceway.step_type': 'claude',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'gen_ai.usage.input_tokens': 15,
                 'gen_ai.usage.output_tokens': 5,
                 'gen_ai.response.model': 'claude-x',
                 'gen_ai.response.finish_reasons': ('end_turn',),
                 'sluiceway.cost_usd': 0.5,
                 'sluiceway.time_to_first_token': 0.5,
                 'sluiceway.backpressure_wait': 0.125,
                 'sluiceway.status': 'ok'},
  'events': []},
 {'name': 'chat unknown',
  'kind': 'CLIENT',
  'parent': 'invoke_agent answer',
  'start': 4000000000,
  'end': 4500000000,
  'status': ('ERROR', 'superseded: overloaded_error: busy'),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'unknown',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 1,
                 'sluiceway.turn': 0,
                 'sluiceway.superseded': True,
                 'error.type': 'overloaded_error'},
  'events': [('sluiceway.superseded', 4500000000,
              {'sluiceway.reason': 'overloaded_error: busy',
               'sluiceway.next_attempt': 2,
               'sluiceway.delay': 0.25,
               'sluiceway.output_may_have_started': False})]},
 {'name': 'chat unknown',
  'kind': 'CLIENT',
  'parent': 'invoke_agent answer',
  'start': 4750000000,
  'end': 5500000000,
  'status': ('ERROR', 'superseded: connection reset by peer'),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'unknown',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 2,
                 'sluiceway.turn': 1,
                 'gen_ai.response.time_to_first_chunk': 0.25,
                 'sluiceway.superseded': True,
                 'error.type': 'retry'},
  'events': [('sluiceway.superseded', 5500000000,
              {'sluiceway.reason': 'connection reset by peer',
               'sluiceway.next_attempt': 3,
               'sluiceway.delay': 0.5,
               'sluiceway.output_may_have_started': True})]},
 {'name': 'chat unknown',
  'kind': 'CLIENT',
  'parent': 'invoke_agent answer',
  'start': 6000000000,
  'end': 8500000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'unknown',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 3,
                 'sluiceway.turn': 2,
                 'gen_ai.response.time_to_first_chunk': 0.5},
  'events': []},
 {'name': 'invoke_agent answer',
  'kind': 'INTERNAL',
  'parent': 'invoke_workflow demo',
  'start': 4000000000,
  'end': 8500000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'answer',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'mock',
                 'sluiceway.step_type': 'claude_robust',
                 'gen_ai.usage.input_tokens': 0,
                 'gen_ai.usage.output_tokens': 0,
                 'sluiceway.backpressure_wait': 0.0,
                 'sluiceway.status': 'ok'},
  'events': []},
 {'name': 'chat claude-sonnet-4-5',
  'kind': 'CLIENT',
  'parent': 'invoke_agent batch[0]',
  'start': 9250000000,
  'end': 9750000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 1,
                 'sluiceway.turn': 0,
                 'gen_ai.response.time_to_first_chunk': 0.25},
  'events': []},
 {'name': 'invoke_agent batch[0]',
  'kind': 'INTERNAL',
  'parent': 'invoke_agent batch',
  'start': 9250000000,
  'end': 9750000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'batch[0]',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'mock',
                 'sluiceway.step_type': 'claude',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'gen_ai.usage.input_tokens': 0,
                 'gen_ai.usage.output_tokens': 0,
                 'sluiceway.backpressure_wait': 0.0,
                 'sluiceway.status': 'ok'},
  'events': []},
 {'name': 'chat claude-sonnet-4-5',
  'kind': 'CLIENT',
  'parent': 'invoke_agent batch[1]',
  'start': 9250000000,
  'end': 10000000000,
  'status': ('ERROR', 'row 1 is bad'),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 1,
                 'sluiceway.turn': 0,
                 'error.type': 'ValueError'},
  'events': []},
 {'name': 'invoke_agent batch[1]',
  'kind': 'INTERNAL',
  'parent': 'invoke_agent batch',
  'start': 9250000000,
  'end': 10000000000,
  'status': ('ERROR', 'row 1 is bad'),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'batch[1]',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'mock',
                 'sluiceway.step_type': 'claude',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'error.type': 'ValueError'},
  'events': [('exception', 10000000000,
              {'exception.type': 'ValueError',
               'exception.message': 'bad row',
               'exception.stacktrace': 'ValueError: bad row\n',
               'exception.escaped': 'False'})]},
 {'name': 'invoke_agent batch',
  'kind': 'INTERNAL',
  'parent': 'invoke_workflow demo',
  'start': 9000000000,
  'end': 10500000000,
  'status': ('ERROR', 'RuntimeError'),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'batch',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'mock',
                 'sluiceway.step_type': 'batch',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'error.type': 'RuntimeError'},
  'events': [('exception', 10500000000,
              {'exception.type': 'RuntimeError',
               'exception.message': '',
               'exception.stacktrace': 'RuntimeError\n',
               'exception.escaped': 'False'})]},
 {'name': 'chat claude-sonnet-4-5',
  'kind': 'CLIENT',
  'parent': 'invoke_agent par.a',
  'start': 11000000000,
  'end': 11500000000,
  'status': ('ERROR', 'the step was cancelled'),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 1,
                 'sluiceway.turn': 0,
                 'error.type': 'cancelled'},
  'events': []},
 {'name': 'execute_tool Bash',
  'kind': 'INTERNAL',
  'parent': 'invoke_agent par.a',
  'start': 11250000000,
  'end': 11500000000,
  'status': ('ERROR', 'the step was cancelled'),
  'attributes': {'gen_ai.operation.name': 'execute_tool',
                 'gen_ai.tool.name': 'Bash',
                 'gen_ai.tool.call.id': 't2',
                 'gen_ai.tool.type': 'function',
                 'gen_ai.tool.call.arguments': '{"cmd": "ls"}',
                 'error.type': 'cancelled'},
  'events': []},
 {'name': 'invoke_agent par.a',
  'kind': 'INTERNAL',
  'parent': 'invoke_agent par',
  'start': 11000000000,
  'end': 11500000000,
  'status': ('ERROR', 'the step was cancelled'),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'par.a',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'mock',
                 'sluiceway.step_type': 'claude',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'error.type': 'cancelled'},
  'events': []},
 {'name': 'invoke_agent par.x.y',
  'kind': 'INTERNAL',
  'parent': 'invoke_agent par',
  'start': 11500000000,
  'end': 11625000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'par.x.y',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'mock',
                 'sluiceway.step_type': 'claude',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'gen_ai.usage.input_tokens': 0,
                 'gen_ai.usage.output_tokens': 0,
                 'sluiceway.backpressure_wait': 0.0,
                 'sluiceway.status': 'ok'},
  'events': []},
 {'name': 'invoke_agent par',
  'kind': 'INTERNAL',
  'parent': 'invoke_workflow demo',
  'start': 11000000000,
  'end': 11750000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'par',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'mock',
                 'sluiceway.step_type': 'parallel',
                 'gen_ai.usage.input_tokens': 0,
                 'gen_ai.usage.output_tokens': 0,
                 'sluiceway.backpressure_wait': 0.0,
                 'sluiceway.status': 'ok'},
  'events': []},
 {'name': 'chat unknown',
  'kind': 'CLIENT',
  'parent': 'invoke_agent py',
  'start': 12062500000,
  'end': 12062500000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'unknown',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 2,
                 'sluiceway.turn': 0,
                 'gen_ai.output.messages': '[{"role": "assistant", "parts": [{"type": "tool_call", "id": "t5", '
                                           '"name": "Write", "arguments": {"path": "o.txt"}}], "finish_reason": '
                                           '""}]'},
  'events': []},
 {'name': 'invoke_agent py',
  'kind': 'INTERNAL',
  'parent': 'invoke_workflow demo',
  'start': 12000000000,
  'end': 12250000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'py',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'python',
                 'sluiceway.step_type': 'python',
                 'gen_ai.usage.input_tokens': 0,
                 'gen_ai.usage.output_tokens': 0,
                 'sluiceway.backpressure_wait': 0.0,
                 'sluiceway.status': 'ok'},
  'events': []},
 {'name': 'invoke_agent pyfail',
  'kind': 'INTERNAL',
  'parent': 'invoke_workflow demo',
  'start': 12000000000,
  'end': 12125000000,
  'status': ('ERROR', "'k'"),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'pyfail',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'python',
                 'sluiceway.step_type': 'python',
                 'error.type': 'KeyError'},
  'events': [('exception', 12125000000,
              {'exception.type': 'KeyError',
               'exception.message': "'k'",
               'exception.stacktrace': "KeyError: 'k'\n",
               'exception.escaped': 'False'})]},
 {'name': 'chat unknown',
  'kind': 'CLIENT',
  'parent': 'invoke_agent py2',
  'start': 12312500000,
  'end': 12375000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'unknown',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 2,
                 'sluiceway.turn': 0,
                 'gen_ai.response.time_to_first_chunk': 0.0,
                 'gen_ai.output.messages': '[{"role": "assistant", "parts": [{"type": "text", "content": "x"}], '
                                           '"finish_reason": ""}]'},
  'events': []},
 {'name': 'execute_tool Bash',
  'kind': 'INTERNAL',
  'parent': 'invoke_agent py2',
  'start': 12406250000,
  'end': 12437500000,
  'status': ('ERROR',
             'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee'),
  'attributes': {'gen_ai.operation.name': 'execute_tool',
                 'gen_ai.tool.name': 'Bash',
                 'gen_ai.tool.call.id': 't6',
                 'gen_ai.tool.type': 'function',
                 'gen_ai.tool.call.arguments': '{}',
                 'gen_ai.tool.call.result': 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee',
                 'error.type': 'tool_error'},
  'events': []},
 {'name': 'chat unknown',
  'kind': 'CLIENT',
  'parent': 'invoke_agent py2',
  'start': 12375000000,
  'end': 12468750000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'unknown',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 2,
                 'sluiceway.turn': 1,
                 'gen_ai.input.messages': '[{"role": "assistant", "parts": [{"type": "text", "content": "x"}]}]',
                 'gen_ai.response.time_to_first_chunk': 0.078125,
                 'gen_ai.output.messages': '[{"role": "assistant", "parts": [{"type": "text", "content": "y"}], '
                                           '"finish_reason": ""}]'},
  'events': []},
 {'name': 'invoke_agent py2',
  'kind': 'INTERNAL',
  'parent': 'invoke_workflow demo',
  'start': 12250000000,
  'end': 12484375000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'py2',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'python',
                 'sluiceway.step_type': 'python',
                 'gen_ai.usage.input_tokens': 0,
                 'gen_ai.usage.output_tokens': 0,
                 'sluiceway.backpressure_wait': 0.0,
                 'sluiceway.status': 'ok'},
  'events': []},
 {'name': 'invoke_workflow demo',
  'kind': 'INTERNAL',
  'parent': 'caller',
  'start': 0,
  'end': 13000000000,
  'status': ('ERROR', 'a step failed'),
  'attributes': {'gen_ai.operation.name': 'invoke_workflow',
                 'gen_ai.workflow.name': 'demo',
                 'sluiceway.run_id': 'run-1',
                 'sluiceway.status': 'failed',
                 'error.type': 'KeyError'},
  'events': []},
 {'name': 'chat claude-sonnet-4-5',
  'kind': 'CLIENT',
  'parent': 'invoke_agent hang.sub',
  'start': 12750000000,
  'end': 13000000000,
  'status': ('ERROR', 'the stream ended before the call did'),
  'attributes': {'gen_ai.operation.name': 'chat',
                 'gen_ai.provider.name': 'anthropic',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'gen_ai.request.stream': True,
                 'sluiceway.attempt': 1,
                 'sluiceway.turn': 0,
                 'error.type': 'incomplete'},
  'events': []},
 {'name': 'invoke_agent hang.sub',
  'kind': 'INTERNAL',
  'parent': 'invoke_agent hang',
  'start': 12750000000,
  'end': 13000000000,
  'status': ('ERROR', "the stream ended before the step's terminal event"),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'hang.sub',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'mock',
                 'sluiceway.step_type': 'claude',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'error.type': 'incomplete'},
  'events': []},
 {'name': 'execute_tool Grep',
  'kind': 'INTERNAL',
  'parent': 'invoke_agent hang',
  'start': 12750000000,
  'end': 13000000000,
  'status': ('ERROR', "the stream ended before the tool's result"),
  'attributes': {'gen_ai.operation.name': 'execute_tool',
                 'gen_ai.tool.name': 'Grep',
                 'gen_ai.tool.call.id': 't3',
                 'gen_ai.tool.type': 'function',
                 'gen_ai.tool.call.arguments': '{"path": "x"}',
                 'error.type': 'incomplete'},
  'events': []},
 {'name': 'invoke_agent hang',
  'kind': 'INTERNAL',
  'parent': 'invoke_workflow demo',
  'start': 12500000000,
  'end': 13000000000,
  'status': ('ERROR', "the stream ended before the step's terminal event"),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'hang',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'mock',
                 'sluiceway.step_type': 'claude',
                 'gen_ai.request.model': 'claude-sonnet-4-5',
                 'error.type': 'incomplete'},
  'events': []},
 {'name': 'invoke_agent wait',
  'kind': 'INTERNAL',
  'parent': 'invoke_workflow demo',
  'start': 12875000000,
  'end': 13000000000,
  'status': ('ERROR', "the stream ended before the step's terminal event"),
  'attributes': {'gen_ai.operation.name': 'invoke_agent',
                 'gen_ai.agent.name': 'wait',
                 'gen_ai.provider.name': 'anthropic',
                 'sluiceway.provider': 'python',
                 'sluiceway.step_type': 'python',
                 'error.type': 'incomplete'},
  'events': []},
 {'name': 'invoke_workflow p-ok',
  'kind': 'INTERNAL',
  'parent': 'caller',
  'start': 500000000,
  'end': 1500000000,
  'status': ('UNSET', None),
  'attributes': {'gen_ai.operation.name': 'invoke_workflow',
                 'gen_ai.workflow.name': 'p-ok',
                 'sluiceway.run_id': 'r',
                 'sluiceway.status': 'ok'},
  'events': []},
 {'name': 'invoke_workflow p-cancelled',
  'kind': 'INTERNAL',
  'parent': 'caller',
  'start': 500000000,
  'end': 1500000000,
  'status': ('ERROR', 'the run was cancelled'),
  'attributes': {'gen_ai.operation.name': 'invoke_workflow',
                 'gen_ai.workflow.name': 'p-cancelled',
                 'sluiceway.run_id': 'r',
                 'sluiceway.status': 'cancelled',
                 'error.type': 'cancelled'},
  'events': []},
 {'name': 'invoke_workflow p-failed',
  'kind': 'INTERNAL',
  'parent': 'caller',
  'start': 500000000,
  'end': 1500000000,
  'status': ('ERROR', 'a step failed'),
  'attributes': {'gen_ai.operation.name': 'invoke_workflow',
                 'gen_ai.workflow.name': 'p-failed',
                 'sluiceway.run_id': 'r',
                 'sluiceway.status': 'failed',
                 'error.type': 'failed'},
  'events': []},
 {'name': 'invoke_workflow p-None',
  'kind': 'INTERNAL',
  'parent': 'caller',
  'start': 500000000,
  'end': 500000000,
  'status': ('ERROR', 'the stream ended before RunFinished'),
  'attributes': {'gen_ai.operation.name': 'invoke_workflow',
                 'gen_ai.workflow.name': 'p-None',
                 'sluiceway.run_id': 'r',
                 'error.type': 'incomplete'},
  'events': []}]

_EXPECTED_METRICS: Any = {'gen_ai.client.operation.time_to_first_chunk': {'unit': 's',
                                                 'description': 'Time to receive the first chunk of a streamed '
                                                                'response.',
                                                 'points': [([('gen_ai.operation.name', 'chat'),
                                                              ('gen_ai.provider.name', 'anthropic'),
                                                              ('gen_ai.request.model', 'claude-sonnet-4-5')],
                                                             (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56,
                                                              5.12, 10.24, 20.48, 40.96, 81.92),
                                                             (0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0), 1.0, 3,
                                                             0.25, 0.5),
                                                            ([('gen_ai.operation.name', 'chat'),
                                                              ('gen_ai.provider.name', 'anthropic')],
                                                             (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56,
                                                              5.12, 10.24, 20.48, 40.96, 81.92),
                                                             (1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                                             0.828125, 4, 0.0, 0.5)]},
 'gen_ai.client.operation.time_per_output_chunk': {'unit': 's',
                                                   'description': 'Time per output chunk, for each chunk after the '
                                                                  'first.',
                                                   'points': [([('gen_ai.operation.name', 'chat'),
                                                                ('gen_ai.provider.name', 'anthropic'),
                                                                ('gen_ai.request.model', 'claude-sonnet-4-5')],
                                                               (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28,
                                                                2.56, 5.12, 10.24, 20.48, 40.96, 81.92),
                                                               (0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), 0.75,
                                                               2, 0.25, 0.5),
                                                              ([('gen_ai.operation.name', 'chat'),
                                                                ('gen_ai.provider.name', 'anthropic')],
                                                               (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28,
                                                                2.56, 5.12, 10.24, 20.48, 40.96, 81.92),
                                                               (0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0), 1.5,
                                                               2, 0.5, 1.0)]},
 'gen_ai.client.token.usage': {'unit': '{token}',
                               'description': 'Number of input and output tokens used.',
                               'points': [([('gen_ai.operation.name', 'chat'),
                                            ('gen_ai.provider.name', 'anthropic'),
                                            ('gen_ai.request.model', 'claude-sonnet-4-5'),
                                            ('gen_ai.token.type', 'input')],
                                           (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                                            16777216, 67108864),
                                           (0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 15, 1, 15, 15),
                                          ([('gen_ai.operation.name', 'chat'),
                                            ('gen_ai.provider.name', 'anthropic'),
                                            ('gen_ai.request.model', 'claude-sonnet-4-5'),
                                            ('gen_ai.token.type', 'output')],
                                           (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                                            16777216, 67108864),
                                           (0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 5, 1, 5, 5)]},
 'gen_ai.client.operation.duration': {'unit': 's',
                                      'description': 'GenAI operation duration.',
                                      'points': [([('error.type', 'ValueError'), ('gen_ai.operation.name', 'chat'),
                                                   ('gen_ai.provider.name', 'anthropic'),
                                                   ('gen_ai.request.model', 'claude-sonnet-4-5')],
                                                  DOUBLING_FROM_10_MS,
                                                  (0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0), 0.75, 1, 0.75,
                                                  0.75),
                                                 ([('error.type', 'cancelled'), ('gen_ai.operation.name', 'chat'),
                                                   ('gen_ai.provider.name', 'anthropic'),
                                                   ('gen_ai.request.model', 'claude-sonnet-4-5')],
                                                  DOUBLING_FROM_10_MS,
                                                  (0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0), 0.5, 1, 0.5, 0.5),
                                                 ([('error.type', 'incomplete'), ('gen_ai.operation.name', 'chat'),
                                                   ('gen_ai.provider.name', 'anthropic'),
                                                   ('gen_ai.request.model', 'claude-sonnet-4-5')],
                                                  DOUBLING_FROM_10_MS,
                                                  (0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0.25, 1, 0.25,
                                                  0.25),
                                                 ([('error.type', 'overloaded_error'),
                                                   ('gen_ai.operation.name', 'chat'),
                                                   ('gen_ai.provider.name', 'anthropic')],
                                                  DOUBLING_FROM_10_MS,
                                                  (0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0), 0.5, 1, 0.5, 0.5),
                                                 ([('error.type', 'retry'), ('gen_ai.operation.name', 'chat'),
                                                   ('gen_ai.provider.name', 'anthropic')],
                                                  DOUBLING_FROM_10_MS,
                                                  (0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0), 0.75, 1, 0.75,
                                                  0.75),
                                                 ([('gen_ai.operation.name', 'chat'),
                                                   ('gen_ai.provider.name', 'anthropic'),
                                                   ('gen_ai.request.model', 'claude-sonnet-4-5')],
                                                  DOUBLING_FROM_10_MS,
                                                  (0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0), 2.75, 3, 0.5,
                                                  1.25),
                                                 ([('gen_ai.operation.name', 'chat'),
                                                   ('gen_ai.provider.name', 'anthropic')],
                                                  DOUBLING_FROM_10_MS,
                                                  (1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0), 2.65625, 4, 0.0,
                                                  2.5)]}}
