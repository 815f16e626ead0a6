"""``claude_batch`` (sub-steps NAME[i], max_parallel, timeouts) and ``parallel_claude`` (fail_fast)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
import trio
from sluiceway.engine import Cancelled, Delta, Done, Failed, StepStarted
from sluiceway.specs import MockSpec, loads
from steptypes_helpers import RecordingMock, names, of, run_spec

from sluiceway._errors import ProviderTimeoutError, StepError
from sluiceway.testing import check_invariants


class CountingMock(RecordingMock):
    """Measures how many calls stream at once (virtual time makes the overlap real)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.running = 0
        self.most = 0

    def stream(self, request: Any) -> Any:
        inner = super().stream(request)
        provider = self

        class Counted:
            async def __aenter__(self) -> Any:
                events = await inner.__aenter__()
                provider.running += 1
                provider.most = max(provider.most, provider.running)
                return events

            async def __aexit__(self, *exc: object) -> None:
                provider.running -= 1
                await inner.__aexit__(*exc)

        return Counted()


BATCH = """
name: b
steps:
  - name: many
    type: claude_batch
    prompt: "Echo item-{{item}} (#{{index}})"
    items: [ITEMS]
    batch_config: {max_parallel: 5}
    stream_handler: buffer
    stream_handler_opts: {max_size: 100000}
    mock: {pattern: slow}
  - name: after
    type: claude
    prompt: "{{steps.many.output}}"
    claude_options: {allowed_tools: []}
"""


async def test_fifty_tasks_never_more_than_five_at_once_each_event_attributed(autojump_clock, tmp_path):
    spec = loads(BATCH.replace("ITEMS", ", ".join(str(i) for i in range(50))))
    provider = CountingMock()
    start = trio.current_time()
    result, events = await run_spec(spec, tmp_path, provider=provider)
    assert result.status == "ok", result.error
    assert provider.most == 5  # measured: the limiter held it to 5, and 5 were reached
    assert provider.running == 0
    # 50 slow calls, 5 at a time: ten rounds, far less than 50 calls one after the other
    one_call = result.steps["many"].response.metrics.duration / 10
    assert trio.current_time() - start < 50 * one_call * 0.5

    outputs = result.steps["many"].output
    assert len(outputs) == 50
    check_invariants(events)
    for i in range(50):
        sub = of(events, f"many[{i}]")
        assert isinstance(sub[0], StepStarted) and isinstance(sub[-1], Done)
        assert names(sub).count("Done") == 1
        text = "".join(e.content for e in sub if isinstance(e, Delta))
        assert f"item-{i} (#{i})" in text  # the derived answer quotes its own prompt: no mixing
        assert outputs[i] == text == sub[-1].response.text  # results in task order
        assert provider.requests[[r.step for r in provider.requests].index(f"many[{i}]")].messages[-1][
            "content"] == f"Echo item-{i} (#{i})"
    parent = of(events, "many")
    assert names(parent) == ["StepStarted", "Done"]
    assert parent[0].step_type == "claude_batch"
    # the parent's terminal comes after every sub-step event
    last_sub = max(i for i, e in enumerate(events) if e.step.startswith("many["))
    assert events.index(parent[-1]) > last_sub
    # one handler instance saw the whole batch, each event with its sub-step
    (buffer,) = result.handlers["many"]
    seen = buffer.events
    assert {e.step for e in seen} == {"many", *(f"many[{i}]" for i in range(50))}
    for i in range(50):
        assert buffer.text(f"many[{i}]") == outputs[i]
    assert seen[0].step == "many" and seen[-1].step == "many" and isinstance(seen[-1], Done)
    # the outputs (a list, in order) are the step's output for later steps and files
    assert json.loads((result.run_dir / "many.txt").read_text()) == outputs
    later = provider.requests[-1].messages[-1]["content"]
    assert "item-0 (#0)" in later and "item-49 (#49)" in later


async def test_batch_tasks_timeout_per_task_and_failures(autojump_clock, tmp_path):
    spec = loads("""
name: b
steps:
  - name: t
    type: claude_batch
    tasks:
      - {prompt: quick one}
      - {prompt: [{type: static, content: "the slow one"}], name: slow}
      - {prompt: quick two}
    batch_config: {max_parallel: 3, timeout_per_task: 1.0}
    mock: {response: "a b c d e f g h", delay_ms: 100}
""")
    # only task 1 is slow: 50 deltas at 100 ms cannot finish within its 1 s
    provider = RecordingMock()
    original = provider.stream

    def stream(request: Any) -> Any:
        if request.step == "t[1]":
            request = attrs.evolve(request, mock=MockSpec(response="x " * 50, delay_ms=100))
        return original(request)

    provider.stream = stream  # type: ignore[method-assign]
    result, events = await run_spec(spec, tmp_path, provider=provider)
    assert result.status == "failed" and result.failed_step == "t"
    assert isinstance(result.error, StepError)
    assert "1 of 3 tasks failed" in str(result.error) and "timeout_per_task=1.0" in str(result.error)
    assert isinstance(result.error.__cause__, ProviderTimeoutError)
    slow = of(events, "t[1]")
    assert isinstance(slow[-1], Cancelled) and names(slow).count("Cancelled") == 1
    assert 0 < len(slow[-1].partial.text) < len("x " * 50)
    for i in (0, 2):
        assert isinstance(of(events, f"t[{i}]")[-1], Done)
    parent = of(events, "t")
    assert names(parent) == ["StepStarted", "Failed"]
    # the finished tasks' results are kept (None for the failed one)
    assert result.steps["t"].response.output == ["a b c d e f g h", None, "a b c d e f g h"]
    check_invariants(events)


PARALLEL = """
name: p
steps:
  - name: par
    type: parallel_claude
    FAIL_FAST
    stream_handler: buffer
    parallel_tasks:
      - id: a
        prompt: slow a
        mock: {response: "one two three four five six seven eight", delay_ms: 200}
      - id: bad
        prompt: failing
        mock: {response: "oops it breaks here", delay_ms: 100, error: server_error, error_after: 2}
      - id: c
        prompt: slow c
        claude_options: {model: claude-haiku-4-5}
        mock: {response: "alpha beta gamma delta epsilon zeta", delay_ms: 200}
"""


async def test_fail_fast_cancels_siblings_each_with_exactly_one_terminal(autojump_clock, tmp_path):
    provider = RecordingMock()
    result, events = await run_spec(loads(PARALLEL.replace("FAIL_FAST", "")), tmp_path, provider=provider)
    assert result.status == "failed" and result.failed_step == "par"
    assert "bad" in str(result.error)
    check_invariants(events)
    bad = of(events, "par.bad")
    assert isinstance(bad[-1], Failed) and names(bad).count("Failed") == 1
    for sibling in ("par.a", "par.c"):
        sub = of(events, sibling)
        assert isinstance(sub[0], StepStarted)
        terminals = [e for e in sub if isinstance(e, Done | Failed | Cancelled)]
        assert len(terminals) == 1 and isinstance(terminals[0], Cancelled), names(sub)
        assert sub[-1] is terminals[0]
        # cancelled mid-stream: some of its text, not all
        assert 0 < len(terminals[0].partial.text) < 20
    # the branches really ran concurrently, each with its options
    assert {r.step: r.model for r in provider.requests} == {
        "par.a": "claude-sonnet-4-5", "par.bad": "claude-sonnet-4-5", "par.c": "claude-haiku-4-5",
    }
    assert names(of(events, "par")) == ["StepStarted", "Failed"]
    (buffer,) = result.handlers["par"]
    assert [type(e).__name__ for e in buffer.events if e.step == "par.a"][-1] == "Cancelled"


async def test_without_fail_fast_the_others_finish(autojump_clock, tmp_path):
    result, events = await run_spec(loads(PARALLEL.replace("FAIL_FAST", "fail_fast: false")), tmp_path)
    assert result.status == "failed" and result.failed_step == "par"
    check_invariants(events)
    assert isinstance(of(events, "par.bad")[-1], Failed)
    a, c = of(events, "par.a")[-1], of(events, "par.c")[-1]
    assert isinstance(a, Done) and a.response.text == "one two three four five six seven eight"
    assert isinstance(c, Done) and c.response.text == "alpha beta gamma delta epsilon zeta"
    assert result.steps["par"].response.output == [a.response.text, None, c.response.text]


async def test_parallel_all_ok_outputs_in_branch_order(autojump_clock, tmp_path):
    yaml = PARALLEL.replace("FAIL_FAST", "").replace(
        "mock: {response: \"oops it breaks here\", delay_ms: 100, error: server_error, error_after: 2}",
        "mock: {response: \"fine\", delay_ms: 500}",
    )
    result, events = await run_spec(loads(yaml), tmp_path)
    assert result.status == "ok", result.error
    assert result.steps["par"].output == [
        "one two three four five six seven eight", "fine", "alpha beta gamma delta epsilon zeta",
    ]
    # concurrently: a 8-delta branch at 200 ms runs ~1.6 s, not the sum of all three
    assert result.steps["par"].response.metrics.duration < 2.0
    check_invariants(events)


async def test_a_composite_response_sums_its_sub_steps_superseded_usage_and_cost():
    from sluiceway.engine import Response, Usage

    from sluiceway._execution._composite import composite_response as _composite_response

    retried = Response(
        usage=Usage(input_tokens=5), cost_usd=0.5,
        superseded_usage=Usage(input_tokens=3, output_tokens=2), superseded_cost_usd=0.25,
    )
    clean = Response(usage=Usage(input_tokens=7), cost_usd=0.7)
    both = _composite_response([1, 2, 3], [retried, clean, None], trio.current_time())
    assert both.usage == Usage(input_tokens=12) and both.cost_usd == pytest.approx(1.2)
    assert both.superseded_usage == Usage(input_tokens=3, output_tokens=2)
    assert both.superseded_cost_usd == pytest.approx(0.25)
    unknown = Response(superseded_usage=Usage(output_tokens=1), superseded_cost_usd=None)
    assert _composite_response([1, 2], [retried, unknown], trio.current_time()).superseded_cost_usd is None


@pytest.mark.parametrize(("max_parallel", "items"), [(4, 6), (8, 3)])
async def test_the_fan_in_has_room_for_each_task_streaming_at_once(autojump_clock, tmp_path, max_parallel, items):
    # tasks in lockstep send in the same scheduler passes; a channel that filled reports its size
    # as the sub-step's queue_high_water: never the bare stream_buffer_size (1), which fills at once
    yaml = (
        BATCH.replace("ITEMS", ", ".join(f"x{i}" for i in range(items)))
        .replace("batch_config: {max_parallel: 5}", f"batch_config: {{max_parallel: {max_parallel}}}")
        .replace("stream_handler: buffer", "stream_handler: buffer\n    stream_buffer_size: 1")
    )
    result, events = await run_spec(loads(yaml), tmp_path)
    assert result.status == "ok", result.error
    marks = {e.response.metrics.queue_high_water for e in events if isinstance(e, Done) and e.step.startswith("many[")}
    assert marks <= {0, 1 + min(max_parallel, items)}, marks
