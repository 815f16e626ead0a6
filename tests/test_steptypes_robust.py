"""``claude_robust``: one retry budget, Retrying before each new attempt, no superseded output kept."""

from __future__ import annotations

import io
import json
from pathlib import Path

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sluiceway.engine import Delta, Done, Failed, Retrying
from sluiceway.specs import (
    ClaudeOptions,
    ClaudeRobustStep,
    MockSpec,
    Pipeline,
    RetryConfig,
    loads,
)
from steptypes_helpers import RecordingMock, names, of, run_spec

from sluiceway.testing import check_invariants

CATEGORY = {
    "overloaded": "overloaded", "rate_limit": "rate_limit", "connection_lost": "connection",
    "timeout": "timeout", "server_error": "server_error",
}
TEXT = "the final answer arrives in several small words here"


@st.composite
def scenarios(draw):
    error = draw(st.sampled_from(sorted(CATEGORY)))
    retry_on = draw(st.sets(st.sampled_from(sorted(set(CATEGORY.values()))), min_size=0, max_size=5))
    return {
        "error": error,
        "error_after": draw(st.integers(0, 12)),  # the text has 9 deltas: past it = after the last
        "error_attempts": draw(st.integers(0, 5)),
        "retry_after": draw(st.none() | st.floats(0.0, 5.0)),
        "max_retries": draw(st.integers(0, 4)),
        "backoff": draw(st.sampled_from(["exponential", "linear", "fixed"])),
        "base_delay_ms": draw(st.integers(0, 3000)),
        "retry_on": tuple(sorted(retry_on)),
        "keep_superseded": draw(st.booleans()),
    }


def robust_spec(s: dict) -> Pipeline:
    return Pipeline(
        name="robust",
        steps=(
            ClaudeRobustStep(
                name="r",
                prompt="answer",
                claude_options=ClaudeOptions(allowed_tools=()),
                retry_config=RetryConfig(
                    max_retries=s["max_retries"], backoff=s["backoff"], base_delay_ms=s["base_delay_ms"],
                    max_delay_ms=10_000, retry_on=s["retry_on"],
                ),
                stream_handler=("buffer",),
                stream_handler_opts={"keep_superseded": s["keep_superseded"]},
                mock=MockSpec(
                    response=TEXT, pattern="slow", error=s["error"], error_after=s["error_after"],
                    error_attempts=s["error_attempts"], retry_after=s["retry_after"],
                ),
            ),
        ),
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=scenarios())
def test_retry_properties(tmp_path_factory, s):
    tmp_path = tmp_path_factory.mktemp("robust")
    result, events = trio.run(
        run_spec, robust_spec(s), tmp_path, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    check_invariants(events)
    step = of(events, "r")
    retrying = [e for e in step if isinstance(e, Retrying)]
    attempts = max(e.attempt for e in step)
    retried = CATEGORY[s["error"]] in s["retry_on"]
    # the number of attempts never exceeds max_retries + 1, and is exactly what the script implies
    assert attempts <= s["max_retries"] + 1
    expected = min(s["error_attempts"], s["max_retries"]) + 1 if retried else 1
    if s["error_attempts"] == 0:
        expected = 1
    assert attempts == expected
    # Retrying precedes every new attempt: one per new attempt, before any event of it
    assert [e.next_attempt for e in retrying] == list(range(2, attempts + 1))
    for r in retrying:
        first_of_next = next(i for i, e in enumerate(step) if e.attempt == r.next_attempt)
        assert step.index(r) < first_of_next
        assert r.delay >= (s["retry_after"] or 0) - 1e-9 if s["error"] in ("overloaded", "rate_limit") else True
        before = [e for e in step if e.attempt == r.next_attempt - 1 and isinstance(e, Delta)]
        assert r.output_may_have_started == bool(before)
    ok = s["error_attempts"] < attempts or s["error_attempts"] == 0
    (buffer,) = result.handlers["r"]
    if ok:
        assert result.status == "ok", result.error
        final = step[-1]
        assert isinstance(final, Done)
        last_text = "".join(e.content for e in step if isinstance(e, Delta) and e.attempt == attempts)
        assert final.response.text == last_text == TEXT == result.steps["r"].text
    else:
        assert result.status == "failed"
        assert isinstance(step[-1], Failed)
    if not s["keep_superseded"]:
        # the buffer holds no superseded output: every delta it kept is from the last attempt
        assert all(e.attempt == attempts for e in buffer.events if isinstance(e, Delta))
        if ok:
            assert buffer.text("r") == TEXT
    else:
        assert [e for e in buffer.events if isinstance(e, Delta)] == [e for e in step if isinstance(e, Delta)]


HANDLERS = """
name: robust
steps:
  - name: r
    type: claude_robust
    prompt: answer
    retry_config: {max_retries: 2, base_delay_ms: 500, backoff: fixed}
    stream_handler: [simple, console, file, buffer]
    stream_handler_opts: {show_timestamps: false, color: false, file_path: "{{step}}.log"}
    mock: {response: "good words come out", error: overloaded, error_after: 2, error_attempts: 1}
  - name: j
    type: claude_robust
    prompt: answer
    retry_config: {max_retries: 2, base_delay_ms: 500, backoff: fixed}
    stream_handler: [file, buffer]
    stream_handler_opts: {format: jsonl, file_path: "{{step}}.jsonl", keep_superseded: true}
    mock: {response: "good words come out", error: rate_limit, error_after: 1, error_attempts: 1, retry_after: 2}
"""


async def test_handlers_show_the_retry(autojump_clock, tmp_path: Path):
    out = io.StringIO()
    result, events = await run_spec(loads(HANDLERS), tmp_path, stdout=out)
    assert result.status == "ok", result.error
    printed = out.getvalue()
    # simple and console each print the discard line, naming the attempt that follows
    assert printed.count("output above is discarded; attempt 2 follows in 0.5 s") == 2
    log = (tmp_path / "out" / "r.log").read_text()
    assert "--- attempt 1 superseded (" in log and "attempt 2 follows ---" in log
    assert log.index("superseded") < log.rindex("good words come out")
    simple_buffer = result.handlers["r"][3]
    assert simple_buffer.text() == "good words come out" and simple_buffer.superseded > 0
    lines = [json.loads(x) for x in (tmp_path / "out" / "j.jsonl").read_text().splitlines()]
    assert [x["attempt"] for x in lines if x["type"] == "Delta"][:1] == [1]
    assert {x["attempt"] for x in lines if x["type"] == "Done"} == {2}
    (retry,) = [x for x in lines if x["type"] == "Retrying"]
    assert retry["next_attempt"] == 2 and retry["delay"] == 2.0  # retry_after (2 s) beat the 0.5 s backoff
    kept = result.handlers["j"][1]
    assert kept.text().startswith("good ")  # keep_superseded: attempt 1's delta is still there
    assert kept.text() == "good " + "good words come out"
    assert names(of(events, "j")).count("Retrying") == 1


async def test_fallback_model_after_overloaded(autojump_clock, tmp_path):
    spec = loads("""
name: fb
steps:
  - name: r
    type: claude_robust
    prompt: answer
    retry_config: {max_retries: 1, base_delay_ms: 10, fallback_model: claude-haiku-4-5}
    mock: {error: overloaded, error_attempts: 1}
""")
    provider = RecordingMock()
    result, _ = await run_spec(spec, tmp_path, provider=provider)
    assert result.status == "ok"
    assert [(r.attempt, r.model) for r in provider.requests] == [(1, "claude-sonnet-4-5"), (2, "claude-haiku-4-5")]


async def test_other_step_types_do_not_retry(autojump_clock, tmp_path):
    spec = loads("""
name: once
steps:
  - name: c
    type: claude
    prompt: answer
    mock: {error: overloaded, error_after: 1}
""")
    provider = RecordingMock()
    result, events = await run_spec(spec, tmp_path, provider=provider)
    assert result.status == "failed" and len(provider.requests) == 1
    assert "Retrying" not in names(events)
    assert result.steps["c"].response is not None  # the partial kept
    assert (result.run_dir / "c.txt").read_text() == result.steps["c"].response.text != ""
