"""stream_step attaches the partial response to what it raises; the executor keeps it."""

from __future__ import annotations

import json

import pytest
import trio
from engine_helpers import Recorder, ScriptedProvider, call_script, request
from sluiceway.engine import Cancelled, Failed, HandlerConsumer, RunContext, Usage, stream_step
from sluiceway.engine._provider_events import TextChunk

from sluiceway._errors import OverloadedError


def _failing(pieces, error):
    script = call_script([("text", pieces)], delay=0.1)
    cut = max(i for i, item in enumerate(script) if isinstance(item, TextChunk)) + 1
    return [*script[:cut], error]


async def _run(provider, consumers):
    return await stream_step(
        run=RunContext(run_id="r", origin=trio.current_time()), path="s", provider=provider,
        request=request(), consumers=consumers,
    )


async def test_failed_step_error_carries_the_partial_response(autojump_clock):
    rec = Recorder()
    with pytest.raises(OverloadedError) as info:
        await _run(ScriptedProvider([_failing(["par", "tial"], OverloadedError("busy"))]), [HandlerConsumer(rec, "r")])
    assert info.value.partial.text == "partial"
    assert isinstance(rec.events[-1], Failed) and rec.events[-1].partial is info.value.partial


async def test_cancelled_step_carries_the_partial_response(autojump_clock):
    rec = Recorder()
    provider = ScriptedProvider([call_script([("text", [f"w{i} " for i in range(10)])], delay=1.0)])
    caught = None
    with trio.CancelScope() as scope:
        scope.deadline = trio.current_time() + 3.5
        try:
            await _run(provider, [HandlerConsumer(rec, "r")])
        except BaseException as exc:
            caught = exc
            raise
    assert caught is not None and caught.partial.text == "w0 w1 w2 "
    assert isinstance(rec.events[-1], Cancelled) and rec.events[-1].partial is caught.partial


async def test_error_with_a_partial_keeps_it(autojump_clock):
    error = RuntimeError("busy")
    inner = object()
    error.partial = inner
    with pytest.raises(RuntimeError) as info:
        await _run(ScriptedProvider([_failing(["x"], error)]), [])
    assert info.value.partial is inner


def test_the_mock_model_costs_nothing_and_does_not_warn(caplog):
    from sluiceway.engine._pricing import cost_usd

    with caplog.at_level("WARNING", logger="sluiceway.pricing"):
        assert cost_usd("claude-mock-1", Usage(input_tokens=10_000, output_tokens=5_000)) == 0.0
    assert caplog.records == []


SLOW = """
name: slow
steps:
  - name: s
    type: claude
    prompt: talk
    claude_options: {allowed_tools: [], TIMEOUT}
    mock: {response: "one two three four five six seven eight nine ten", delay_ms: 100}
"""


async def test_executor_keeps_the_partial_text_of_a_timed_out_step(autojump_clock, tmp_path):
    from sluiceway.specs import loads
    from steptypes_helpers import run_spec

    from sluiceway._errors import ProviderTimeoutError

    result, _ = await run_spec(loads(SLOW.replace("TIMEOUT", "timeout_ms: 350")), tmp_path)
    assert result.status == "failed" and isinstance(result.error, ProviderTimeoutError)
    step = result.steps["s"]
    assert step.response is not None and step.response.text == "one two three four "
    assert (result.run_dir / "s.txt").read_text() == "one two three four "
    saved = json.loads((result.run_dir / "result.json").read_text())
    assert saved["steps"]["s"]["text"] == "one two three four "


async def test_executor_keeps_the_partial_text_of_a_cancelled_step(autojump_clock, tmp_path):
    from sluiceway.specs import loads

    from sluiceway._execution import RunOptions, execute

    spec = loads(SLOW.replace(", TIMEOUT", ""))
    async with trio.open_nursery() as nursery:
        result = await nursery.start(execute, spec, RunOptions(output_dir=tmp_path, workspace=tmp_path))
        await trio.sleep(0.35)
        nursery.cancel_scope.cancel()
    assert result.status == "cancelled" and result.failed_step == "s"
    assert result.steps["s"].status == "cancelled"
    assert result.steps["s"].response.text == "one two three four "
    assert (result.run_dir / "s.txt").read_text() == "one two three four "
