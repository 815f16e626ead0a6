"""The pytest plugin's recorder and virtual_run fixtures, in sync and trio-mode tests."""

from __future__ import annotations

import time

from sluiceway.engine import Delta, Done
from sluiceway.specs import loads

from sluiceway.testing import StreamingRecorder

SPEC = """
name: plugin_demo
steps:
  - name: draft
    type: claude
    prompt: "Hi"
    mock:
      response: "one two three"
      pattern: slow
      first_token_delay_ms: 4000
      delay_ms: 1000
"""


def test_recorder_fixture_is_fresh(recorder):
    assert isinstance(recorder, StreamingRecorder)
    assert recorder.events() == [] and not recorder.closed


def test_virtual_run_in_a_sync_test(virtual_run, recorder, tmp_path):
    began = time.perf_counter()
    result = virtual_run(loads(SPEC))
    assert time.perf_counter() - began < 1.0
    assert result.status == "ok"
    assert result.run_dir.parent == tmp_path
    assert (result.run_dir / "result.json").exists()
    assert recorder.text("draft") == "one two three"
    assert [d.content for d in recorder.events("draft", Delta)] == ["one ", "two ", "three"]
    (done,) = recorder.events("draft", Done)
    assert done.response.metrics.time_to_first_token == 4.0
    assert done.response.metrics.duration == 6.0
    recorder.check_invariants()


async def test_virtual_run_in_a_trio_mode_test(virtual_run, recorder):
    result = await virtual_run.arun(loads(SPEC))
    assert result.steps["draft"].response.metrics.time_to_first_token == 4.0
    assert recorder.text("draft") == "one two three"
    other = StreamingRecorder()
    await virtual_run.arun(loads(SPEC), recorder=other)
    assert other.text("draft") == "one two three"
    assert len(recorder.events("draft", Done)) == 1
