"""``claude`` steps: tools in the workspace, the tool-use loop, confinement, max_turns, defaults."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sluiceway.engine import Done, Message, StepStarted, ToolInputDelta, ToolResult, ToolUse
from sluiceway.specs import loads
from steptypes_helpers import RecordingMock, names, of, run_spec

from sluiceway._execution._model_call import DEFAULT_TOOL_TURNS
from sluiceway.testing import check_invariants

LOOP = """
name: tools
steps:
  - name: fix
    type: claude
    prompt: Fix the greeting in hello.txt
    claude_options: {allowed_tools: [Read, Edit, Write, LS], max_turns: 6}
    mock:
      turns:
        - text: "Reading. "
          tool_calls: [{name: Read, input: {file_path: hello.txt}}]
        - text: "Editing. "
          tool_calls: [{name: Edit, input: {file_path: hello.txt, old_string: wrold, new_string: world}}]
        - tool_calls: [{name: Read, input: {file_path: hello.txt}}]
        - text: "Trying the outside. "
          tool_calls:
            - {name: Read, input: {file_path: ../secret.txt}}
            - {name: Write, input: {file_path: SECRET_ABS, content: pwned}}
            - {name: Edit, input: {file_path: link/secret.txt, old_string: top, new_string: pwned}}
            - {name: LS, input: {path: ..}}
        - text: "Fixed the greeting."
"""


def tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


async def test_scripted_loop_reads_edits_reads_back_and_is_confined(autojump_clock, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "hello.txt").write_text("hello wrold\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    (ws / "link").symlink_to(tmp_path, target_is_directory=True)  # a symlink out of the workspace
    outside_before = {k: v for k, v in tree(tmp_path).items() if not k.startswith("ws")}

    spec = loads(LOOP.replace("SECRET_ABS", str(secret)))
    provider = RecordingMock()
    result, events = await run_spec(spec, tmp_path, provider=provider, output_dir=tmp_path / "ws" / "out")

    assert result.status == "ok", result.error
    assert (ws / "hello.txt").read_text() == "hello world\n"
    # nothing outside the workspace was touched (compared byte for byte)
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("ws")} == outside_before
    assert secret.read_text() == "top secret\n"

    step = of(events, "fix")
    check_invariants(step)
    kinds = names(step)
    assert kinds[0] == "StepStarted" and kinds[-1] == "Done"
    uses = [e for e in step if isinstance(e, ToolUse)]
    results = [e for e in step if isinstance(e, ToolResult)]
    assert [u.name for u in uses] == ["Read", "Edit", "Read", "Read", "Write", "Edit", "LS"]
    assert [r.tool_use_id for r in results] == [u.tool_use_id for u in uses]
    # each ToolUse comes after its input deltas and before its ToolResult, which precedes the next call
    for use, res in zip(uses, results, strict=True):
        i, j = step.index(use), step.index(res)
        assert i < j
        assert any(isinstance(e, ToolInputDelta) and e.tool_use_id == use.tool_use_id for e in step[:i])
        assert isinstance(step[j - 1], ToolResult | Message)
    assert "hello wrold" in results[0].content and not results[0].is_error
    assert not results[1].is_error
    assert "hello world" in results[2].content and not results[2].is_error
    for refused in results[3:]:  # .., absolute path, symlink out, listing the parent
        assert refused.is_error, refused
        assert "outside" in refused.content or "escapes" in refused.content, refused.content
    assert "secret" not in results[3].content.replace("secret.txt", "")
    done = step[-1]
    assert isinstance(done, Done) and done.response.status == "ok"
    assert done.response.text.endswith("Fixed the greeting.")
    assert len(provider.requests) == 5  # five model calls: one per turn
    assert [r.turn for r in provider.requests] == [0, 1, 2, 3, 4]
    # the tool definitions sent: allowed_tools, in the toolbox's order
    assert [t["name"] for t in provider.requests[0].tools] == ["Read", "Write", "Edit", "LS"]
    assert all(t["input_schema"]["type"] == "object" for t in provider.requests[0].tools)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed: apt-get install bubblewrap")
async def test_only_allowed_minus_disallowed_tools_are_offered(autojump_clock, tmp_path):
    spec = loads("""
name: t
steps:
  - name: a
    type: claude
    prompt: hi
    claude_options: {allowed_tools: [Read, Bash, Grep], disallowed_tools: [Grep]}
  - name: b
    type: claude
    prompt: hi
    claude_options: {disallowed_tools: [Write, Edit]}
""")
    provider = RecordingMock()
    result, _ = await run_spec(spec, tmp_path, provider=provider)
    assert result.status == "ok"
    assert [t["name"] for t in provider.requests[0].tools] == ["Read", "Bash"]
    # no allowed_tools: nothing is offered (no implicit defaults), whatever is disallowed
    assert provider.requests[1].tools == ()


async def test_the_pipelines_default_allowed_tools_minus_the_steps_disallowed(autojump_clock, tmp_path):
    spec = loads("""
name: t
defaults:
  claude_options: {allowed_tools: [Read, Write, Edit, LS]}
steps:
  - name: a
    type: claude
    prompt: hi
    claude_options: {disallowed_tools: [Write, Edit]}
  - name: b
    type: claude_batch
    prompt: "hi {{item}}"
    items: [x]
""")
    provider = RecordingMock()
    result, _ = await run_spec(spec, tmp_path, provider=provider)
    assert result.status == "ok", result.error
    assert [t["name"] for t in provider.requests[0].tools] == ["Read", "LS"]
    assert [t["name"] for t in provider.requests[1].tools] == ["Read", "Write", "Edit", "LS"]


async def test_max_turns_ends_with_a_status_not_a_crash(autojump_clock, tmp_path):
    spec = loads("""
name: t
steps:
  - name: loop
    type: claude
    prompt: go on forever
    claude_options: {max_turns: 3, allowed_tools: [LS]}
    mock:
      turns:
        - tool_calls: [{name: LS, input: {}}]
        - tool_calls: [{name: LS, input: {}}]
        - tool_calls: [{name: LS, input: {}}]
        - tool_calls: [{name: LS, input: {}}]
""")
    provider = RecordingMock()
    result, events = await run_spec(spec, tmp_path, provider=provider)
    assert result.status == "ok"
    assert result.steps["loop"].response.status == "max_turns"
    assert len(provider.requests) == 3
    step = of(events, "loop")
    assert names(step).count("ToolResult") == 2  # the third call's tool use is not run
    assert isinstance(step[-1], Done) and step[-1].response.status == "max_turns"


@pytest.mark.parametrize(
    ("yaml_step", "turns", "tools"),
    [
        ("type: claude", 1, 0),  # no allowed_tools: no tools, one call
        ("type: claude_batch\n    items: [a]", 1, 0),
        ("type: claude\n    claude_options: {allowed_tools: [Read, Write, Edit, Glob, Grep, LS]}", DEFAULT_TOOL_TURNS, 6),
        ("type: claude_smart\n    preset: development", 10, 6),
        ("type: claude\n    claude_options: {allowed_tools: []}", 1, 0),
        ("type: claude_smart\n    preset: chat", 1, 0),
        ("type: claude_smart\n    preset: production", 5, 4),
        ("type: llm\n    provider: claude", 1, 0),
        ("type: llm\n    provider: claude\n    claude_options: {allowed_tools: [Read]}", DEFAULT_TOOL_TURNS, 1),
    ],
)
async def test_default_max_turns_follows_the_tools(autojump_clock, tmp_path, yaml_step, turns, tools):
    # the model always wants another tool call: the loop runs exactly max_turns calls.
    # With threshold 0 the clock would jump to a preset's timeout_ms while a worker thread read
    # a file; tools._blocking runs tool I/O inline under such a clock, so this must pass.
    spec = loads(f"""
name: t
steps:
  - name: s
    prompt: hi
    {yaml_step}
    mock:
      tool_calls: [{{name: Read, input: {{file_path: x}}}}]
      turns: [{{tool_calls: [{{name: Read, input: {{file_path: x}}}}]}}]
""".replace("turns: [", "turns: [" + ", ".join(["{tool_calls: [{name: Read, input: {file_path: x}}]}"] * 12) + ", "))
    provider = RecordingMock()
    result, _ = await run_spec(spec, tmp_path, provider=provider)
    assert result.status == "ok", result.error
    assert len(provider.requests) == turns
    assert len(provider.requests[0].tools) == tools
    assert result.steps["s"].response.status == ("max_turns" if tools else "ok")


async def test_cwd_outside_the_workspace_is_the_steps_error(autojump_clock, tmp_path):
    spec = loads("""
name: t
steps:
  - name: s
    type: claude
    prompt: hi
    claude_options: {cwd: ../.., allowed_tools: [Read]}
""")
    result, events = await run_spec(spec, tmp_path)
    assert result.status == "failed" and result.failed_step == "s"
    assert "cwd escapes the workspace" in str(result.error)
    assert not [e for e in events if isinstance(e, StepStarted) and e.step == "s"]


async def test_claude_options_cwd_is_where_relative_paths_start(autojump_clock, tmp_path):
    (tmp_path / "ws" / "sub").mkdir(parents=True)
    (tmp_path / "ws" / "sub" / "note.txt").write_text("in sub\n")
    spec = loads("""
name: t
steps:
  - name: s
    type: claude
    prompt: read it
    claude_options: {cwd: sub, allowed_tools: [Read]}
    mock:
      tool_calls: [{name: Read, input: {file_path: note.txt}}]
      response: done
""")
    result, events = await run_spec(spec, tmp_path)
    assert result.status == "ok"
    (res,) = [e for e in events if isinstance(e, ToolResult)]
    assert "in sub" in res.content and not res.is_error
