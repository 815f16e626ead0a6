"""stream_step with the real MockProvider, RetryPolicy and Toolbox: the pieces fit."""

from __future__ import annotations

import pytest
import trio
from engine_helpers import Recorder
from sluiceway.engine import (
    Delta,
    Done,
    HandlerConsumer,
    ModelRequest,
    Retrying,
    RunContext,
    ToolResult,
    ToolUse,
    stream_step,
)
from sluiceway.engine._retry import RetryPolicy
from sluiceway.providers._mock import MockProvider
from sluiceway.tools import Toolbox

from sluiceway._errors import OverloadedError
from sluiceway.testing import check_invariants


def mock_request(mock: dict, prompt: str = "hello") -> ModelRequest:
    return ModelRequest(step="m", model="claude-mock-1", messages=({"role": "user", "content": prompt},), mock=mock)


async def run(mock: dict, consumers, **kwargs):
    return await stream_step(
        run=RunContext(run_id="r", origin=trio.current_time()),
        path="m",
        provider=MockProvider(),
        request=mock_request(mock),
        consumers=consumers,
        **kwargs,
    )


async def test_slow_pattern_streams_each_word_when_the_mock_sends_it(autojump_clock):
    rec = Recorder(batch=False)
    start = trio.current_time()
    response = await run({"response": "one two three four", "pattern": "slow"}, [HandlerConsumer(rec, "r", "coalesce", 0)])
    deltas = [(t - start, e.content) for t, e in zip(rec.times, rec.events, strict=True) if isinstance(e, Delta)]
    # slow: first token after 300 ms, then one word every 150 ms; each arrives at once
    assert deltas == [
        (pytest.approx(0.30), "one "),
        (pytest.approx(0.45), "two "),
        (pytest.approx(0.60), "three "),
        (pytest.approx(0.75), "four"),
    ]
    assert response.text == "one two three four"
    assert response.metrics.time_to_first_token == pytest.approx(0.30)
    assert response.usage.output_tokens >= 1 and response.usage.input_tokens >= 1
    check_invariants(rec.events)


async def test_retry_policy_with_injected_overload(autojump_clock):
    rec = Recorder()
    policy = RetryPolicy(max_retries=2, backoff="fixed", base_delay=0.5, fallback_model="claude-fallback")
    response = await run(
        {"response": "alpha beta gamma", "error": "overloaded", "error_after": 2, "error_attempts": 1},
        [HandlerConsumer(rec, "r")],
        retry=policy,
    )
    retrying = [e for e in rec.events if isinstance(e, Retrying)]
    assert [(r.delay, r.output_may_have_started, r.next_attempt) for r in retrying] == [(0.5, True, 2)]
    assert response.text == "alpha beta gamma" and response.model == "claude-fallback"
    done = rec.events[-1]
    assert isinstance(done, Done) and done.attempt == 2
    check_invariants(rec.events)


async def test_retry_budget_spent_fails(autojump_clock):
    rec = Recorder()
    with pytest.raises(OverloadedError):
        await run(
            {"response": "x y", "error": "overloaded", "error_after": 1},
            [HandlerConsumer(rec, "r")],
            retry=RetryPolicy(max_retries=1, backoff="fixed", base_delay=0.1),
        )
    assert [type(e).__name__ for e in rec.events].count("Retrying") == 1
    assert type(rec.events[-1]).__name__ == "Failed" and rec.events[-1].attempt == 2


async def test_tool_loop_with_toolbox_reads_a_file(autojump_clock, tmp_path):
    (tmp_path / "notes.txt").write_text("the secret is 42\n")
    rec = Recorder()
    response = await run(
        {"tool_calls": [{"name": "Read", "input": {"file_path": "notes.txt"}}], "response": "It says 42."},
        [HandlerConsumer(rec, "r")],
        tool_runner=Toolbox(tmp_path, allowed=None),
        max_turns=3,
    )
    (use,) = [e for e in rec.events if isinstance(e, ToolUse)]
    (result,) = [e for e in rec.events if isinstance(e, ToolResult)]
    assert use.name == "Read" and use.input == {"file_path": "notes.txt"}
    assert result.tool_use_id == use.tool_use_id and "the secret is 42" in result.content and not result.is_error
    assert response.text.endswith("It says 42.") and response.status == "ok"
    assert [type(e).__name__ for e in rec.events].index("ToolResult") > [type(e).__name__ for e in rec.events].index(
        "ToolUse"
    )
    check_invariants(rec.events)
