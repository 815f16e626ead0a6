"""run_virtual: whole pipelines on the virtual clock, exact virtual metrics."""

from __future__ import annotations

import io
import time

import pytest
import trio
from sluiceway.engine import Delta, Failed, RunFinished, RunStarted, StepStarted
from sluiceway.specs import loads

from sluiceway.testing import StreamingRecorder, arun_virtual, run_virtual

WORDS = 1200


def long_spec(words: int = WORDS) -> str:
    return f"""
name: long_stream
steps:
  - name: essay
    type: claude
    prompt: "Write a very long essay."
    stream_handler: buffer
    stream_handler_opts:
      max_size: 5000
    mock:
      pattern: slow
      first_token_delay_ms: 1500
      delay_ms: 500
      response: "{'word ' * words}"
"""


TEN_MINUTES = long_spec()


def test_a_ten_minute_stream_takes_under_a_second_with_exact_ttft(tmp_path):
    spec = loads(TEN_MINUTES)
    recorder = StreamingRecorder()
    began = time.perf_counter()
    result = run_virtual(spec, output_dir=tmp_path, recorder=recorder)
    elapsed = time.perf_counter() - began
    assert result.status == "ok"
    response = result.steps["essay"].response
    metrics = response.metrics
    # scripted: 1.5 s to the first token, then 0.5 s between the 1200 word deltas
    assert metrics.time_to_first_token == 1.5
    assert metrics.duration == pytest.approx(1.5 + (WORDS - 1) * 0.5)
    assert metrics.duration >= 600
    assert elapsed < 1.0, f"took {elapsed:.3f} s of real time"
    assert response.text == "word " * WORDS
    # the recorder saw the whole run, in order, on the virtual clock
    events = recorder.events()
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    deltas = recorder.events("essay", Delta)
    assert len(deltas) == WORDS
    assert deltas[0].at - recorder.events("essay", StepStarted)[0].at == 1.5
    assert deltas[-1].at - deltas[0].at == (WORDS - 1) * 0.5
    assert recorder.text("essay") == response.text
    assert recorder.closed and recorder.close_count == 1
    recorder.check_invariants()
    # the buffer handler the spec names got the same text
    assert result.handlers["essay"][0].text() == response.text


FAILING = """
name: flaky
steps:
  - name: draft
    type: claude
    prompt: "Hello"
    stream_handler: simple
    mock:
      response: "steady answer"
      pattern: slow
      first_token_delay_ms: 250
      delay_ms: 125
      error: overloaded
      error_after: 2
  - name: never
    type: claude
    prompt: "Not reached"
"""


def test_a_failing_step_is_recorded_with_its_partial_output(tmp_path):
    out = io.StringIO()
    recorder = StreamingRecorder()
    began = time.perf_counter()
    result = run_virtual(loads(FAILING), output_dir=tmp_path, recorder=recorder, stdout=out)
    assert time.perf_counter() - began < 1.0
    assert result.status == "failed"
    assert "overloaded" in str(result.error).lower()
    assert "never" not in result.steps or result.steps["never"].status != "ok"
    (failed,) = recorder.events("draft", Failed)
    assert recorder.events("draft")[-1] == failed
    assert [d.content for d in recorder.events("draft", Delta)] == ["steady ", "answer"]
    assert failed.partial.text == "steady answer" == recorder.text("draft")
    deltas = recorder.events("draft", Delta)
    started = recorder.events("draft", StepStarted)[0]
    assert deltas[0].at - started.at == 0.25
    assert deltas[1].at - deltas[0].at == 0.125
    assert recorder.events()[-1].status == "failed"
    recorder.check_invariants()
    assert "ASSISTANT: steady" in out.getvalue()
    assert "✗ Stream failed" in out.getvalue()


async def test_inside_trio_use_arun_virtual(tmp_path):
    our_start = trio.current_time()
    with pytest.raises(RuntimeError, match="use `await arun_virtual"):
        run_virtual(loads(FAILING), output_dir=tmp_path)
    result = await arun_virtual(loads(TEN_MINUTES), output_dir=tmp_path)
    assert result.steps["essay"].response.metrics.time_to_first_token == 1.5
    # our own (pytest-trio) clock did not move by ten minutes
    assert trio.current_time() - our_start < 5


def test_recorder_api(tmp_path):
    recorder = StreamingRecorder()
    run_virtual(loads(long_spec(3)), output_dir=tmp_path, recorder=recorder)
    assert recorder.steps() == ["essay"]
    assert recorder.text() == recorder.text("essay")
    assert [type(e).__name__ for e in recorder.events("essay")][:2] == ["StepStarted", "Delta"]
    assert recorder.events(kind="RunFinished")[0].status == "ok"
    assert recorder.events(kind=Delta) == recorder.events("essay", "Delta")
    with pytest.raises(ValueError, match="name the step"):
        StreamingRecorder().text()


def test_record_then_replay_keeps_the_virtual_timing(tmp_path):
    cassette = tmp_path / "long.cassette.jsonl"
    spec = loads(long_spec(40))
    recorded = run_virtual(spec, output_dir=tmp_path, record=cassette)
    assert cassette.exists()
    replayer = StreamingRecorder()
    began = time.perf_counter()
    replayed = run_virtual(spec, mode="replay", cassette=cassette, output_dir=tmp_path, recorder=replayer)
    assert time.perf_counter() - began < 1.0
    assert replayed.status == "ok"
    before = recorded.steps["essay"].response
    after = replayed.steps["essay"].response
    assert after.text == before.text == "word " * 40
    assert after.metrics.time_to_first_token == before.metrics.time_to_first_token == 1.5
    assert after.metrics.duration == pytest.approx(before.metrics.duration)
    assert len(replayer.events("essay", Delta)) == 40
    replayer.check_invariants()


DEADLINE = """
name: stalled
steps:
  - name: draft
    type: claude
    prompt: "Hello"
    claude_options:
      first_token_timeout_ms: 45000
    mock:
      response: "never sent"
      error: timeout
"""


def test_a_first_token_deadline_fires_at_its_exact_virtual_time(tmp_path):
    recorder = StreamingRecorder()
    began = time.perf_counter()
    result = run_virtual(loads(DEADLINE), output_dir=tmp_path, recorder=recorder)
    assert time.perf_counter() - began < 1.0
    assert result.status == "failed"
    assert type(result.error).__name__ == "ProviderTimeoutError"
    started = recorder.events("draft", StepStarted)[0]
    (failed,) = recorder.events("draft", Failed)
    assert failed.at - started.at == 45.0
    assert recorder.events("draft", Delta) == []
    recorder.check_invariants()


def test_the_recorder_by_dotted_path_in_yaml(tmp_path):
    spec = loads("""
name: dotted
steps:
  - name: draft
    type: claude
    prompt: "Hi"
    stream_handler: sluiceway.testing.StreamingRecorder
    mock:
      response: "recorded by name"
""")
    result = run_virtual(spec, output_dir=tmp_path)
    (recorder,) = result.handlers["draft"]
    assert isinstance(recorder, StreamingRecorder)
    assert recorder.text("draft") == "recorded by name"
    assert recorder.close_count == 1
    assert type(recorder.events()[-1]).__name__ == "Done"
    recorder.check_invariants()
