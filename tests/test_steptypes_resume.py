"""A retry resumes the tool loop, it never redoes it (issue 14, item 3).

Turn 0 runs a tool with a side effect (an ``Edit`` that doubles every ``a`` of
a file: run twice, the file shows it), turn 1's model call is overloaded once,
then answers. The side effect happens once, ``ToolUse``/``ToolResult`` appear
once, the retried request carries the conversation up to turn 1, and the final
response keeps turn 0 but not the failed call's partial output. In mock mode
(the embedded mock, ``error_turn``) and in live mode (the fake Messages API).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sluiceway.engine import Delta, Done, Message, Retrying, ToolResult, ToolUse
from sluiceway.specs import loads
from steptypes_helpers import RecordingMock, names, of, run_spec

import sluiceway
from sluiceway.testing import check_invariants

EDIT = {"file_path": "sidefx.txt", "old_string": "a", "new_string": "aa", "replace_all": True}

SPEC = """
name: resume
steps:
  - name: r
    type: TYPE
    prompt: double the a's
    claude_options: {allowed_tools: [Edit], max_turns: 5}
    RETRY
    mock:
      turns:
        - {text: "Editing.", tool_calls: [{name: Edit, input: EDIT}]}
        - {text: "The file is edited now."}
      error: overloaded
      error_turn: 1
      error_after: 2
      error_attempts: 1
"""


def spec(step_type: str) -> Any:
    retry = "retry_config: {max_retries: 2, base_delay_ms: 100, backoff: fixed}" if step_type == "claude_robust" else ""
    return loads(SPEC.replace("TYPE", step_type).replace("RETRY", retry).replace("EDIT", json.dumps(EDIT)))


async def test_a_retry_in_turn_1_repeats_only_that_call(autojump_clock, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "sidefx.txt").write_text("a\n")
    provider = RecordingMock()
    result, events = await run_spec(spec("claude_robust"), tmp_path, provider=provider)
    assert result.status == "ok", result.error

    assert (ws / "sidefx.txt").read_text() == "aa\n"  # the tool ran once (twice: "aaaa")
    step = of(events, "r")
    check_invariants(step)
    assert names(step).count("ToolUse") == 1 and names(step).count("ToolResult") == 1
    (result_event,) = [e for e in step if isinstance(e, ToolResult)]
    assert not result_event.is_error
    (retrying,) = [e for e in step if isinstance(e, Retrying)]
    assert (retrying.attempt, retrying.next_attempt) == (1, 2)
    assert retrying.output_may_have_started  # two deltas of turn 1 came before the error
    assert retrying.usage.output_tokens > 0 or retrying.usage.input_tokens > 0

    # three model calls: turn 0, turn 1 (failed), turn 1 again with the conversation up to it
    assert [(r.turn, r.attempt) for r in provider.requests] == [(0, 1), (1, 1), (1, 2)]
    failed, retried = provider.requests[1], provider.requests[2]
    assert retried.messages == failed.messages
    assert [m["role"] for m in retried.messages] == ["user", "assistant", "user"]
    assert retried.messages[1]["content"][-1] == {
        "type": "tool_use", "id": "toolu_mock_0_0", "name": "Edit", "input": EDIT,
    }
    (tool_result,) = retried.messages[2]["content"]
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == "toolu_mock_0_0"

    done = step[-1]
    assert isinstance(done, Done) and done.attempt == 2
    response = done.response
    assert response.text == "Editing.The file is edited now."  # turn 0 kept; the failed call's partial not
    assert result.steps["r"].text == response.text
    partial = "".join(e.content for e in step if isinstance(e, Delta) and e.attempt == 1)
    assert partial.startswith("Editing.") and partial != "Editing."  # attempt 1 also streamed turn 1's start
    assert [(m.role, m.attempt) for m in response.messages] == [("assistant", 1), ("user", 1), ("assistant", 2)]
    assert [m for m in response.messages if m.role == "assistant"] == [e for e in step if isinstance(e, Message)]
    # the failed call's usage is superseded, not in the response's; the kept calls' usage is
    assert response.superseded_usage == retrying.usage
    assert response.usage == sum((m.usage for m in step if isinstance(m, Message)), start=type(retrying.usage)())


async def test_a_plain_claude_step_does_not_retry_and_keeps_its_tool_turn_as_partial(
    autojump_clock, tmp_path: Path
) -> None:
    """``claude`` has no retry budget: the same failure fails the step once, the tool ran once,
    and the partial response holds the tool turn and the failed call's partial text."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "sidefx.txt").write_text("a\n")
    provider = RecordingMock()
    result, events = await run_spec(spec("claude"), tmp_path, provider=provider)
    assert result.status == "failed"
    assert (ws / "sidefx.txt").read_text() == "aa\n"
    step = of(events, "r")
    check_invariants(step)
    assert "Retrying" not in names(step) and names(step)[-1] == "Failed"
    assert [(r.turn, r.attempt) for r in provider.requests] == [(0, 1), (1, 1)]
    assert step[-1].partial.text.startswith("Editing.")


LIVE = """
name: resume-live
steps:
  - name: r
    type: claude_robust
    prompt: double the a's
    claude_options: {allowed_tools: [Edit], max_turns: 5, model: claude-sonnet-4-5}
    retry_config: {max_retries: 2, base_delay_ms: 100, backoff: fixed}
"""


async def test_live_a_retry_in_turn_1_repeats_only_that_call(
    tmp_path: Path, fake_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same against the fake Messages API over loopback: the recorded request bodies show the
    retried call carrying the tool turn and its result, and the edit happened once."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "sidefx.txt").write_text("a\n")
    fake_api.reset()  # the server serves the whole session: only this test's requests
    fake_api.script(
        "tool_use?tool=Edit&input=" + json.dumps(EDIT),
        "error?after=2",
        "text?text=The file is edited now.",
    )
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    events: list[Any] = []
    result = await sluiceway.run(
        loads(LIVE), mode="live", output_dir=tmp_path / "out", workspace=ws, on_event=events.append
    )
    assert result.status == "ok", result.error
    assert (ws / "sidefx.txt").read_text() == "aa\n"
    step = of(events, "r")
    check_invariants(step)
    assert names(step).count("ToolUse") == 1 and names(step).count("ToolResult") == 1
    (use,) = [e for e in step if isinstance(e, ToolUse)]
    assert use.input == EDIT
    bodies = [seen["body"] for seen in fake_api.requests_seen]
    assert len(bodies) == 3
    assert bodies[1]["messages"] == bodies[2]["messages"]  # the retry repeats turn 1 as it was
    roles = [m["role"] for m in bodies[2]["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert bodies[2]["messages"][2]["content"][0]["tool_use_id"] == use.tool_use_id
    response = step[-1].response
    assert response.text == "Let me check.The file is edited now."
    assert [(m.role, m.attempt) for m in response.messages] == [("assistant", 1), ("user", 1), ("assistant", 2)]
