"""``claude_smart`` presets, ``claude_session`` conversations, ``claude_extract`` outputs."""

from __future__ import annotations

import json

from sluiceway.engine import Done, Failed
from sluiceway.specs import loads
from sluiceway.tools import SessionError
from steptypes_helpers import RecordingMock, names, of, run_spec

from sluiceway._errors import StepError

SMART = """
name: smart
defaults:
  claude_options: {max_tokens: 1000}
steps:
  - name: dev
    type: claude_smart
    preset: development
    prompt: build it
  - name: tweaked
    type: claude_smart
    preset: analysis
    prompt: look
    claude_options: {temperature: 0.5, allowed_tools: [Read]}
"""


async def test_smart_presets_expand_and_explicit_options_win(autojump_clock, tmp_path):
    provider = RecordingMock()
    result, _ = await run_spec(loads(SMART), tmp_path, provider=provider)
    assert result.status == "ok"
    dev, tweaked = provider.requests
    # development: temperature 0.2, max_tokens 8192 (the preset wins over defaults), six tools
    assert (dev.temperature, dev.max_tokens) == (0.2, 8192)
    assert [t["name"] for t in dev.tools] == ["Read", "Write", "Edit", "Glob", "Grep", "LS"]
    # analysis, with the step's explicit temperature and tools
    assert (tweaked.temperature, tweaked.max_tokens) == (0.5, 8192)
    assert [t["name"] for t in tweaked.tools] == ["Read"]


SESSION = """
name: chat
steps:
  - name: one
    type: claude_session
    prompt: "My name is Ada."
    session_config: {session_name: talk, persist: true}
    mock: {response: "Hello Ada."}
  - name: two
    type: claude_session
    prompt: "What is my name?"
    session_config: {session_name: talk, persist: true}
    mock: {response: "Your name is Ada."}
  - name: other
    type: claude_session
    prompt: "Fresh start"
    session_config: {session_name: elsewhere}
"""


def _texts(messages):
    out = []
    for m in messages:
        content = m["content"]
        out.append((m["role"], content if isinstance(content, str) else "".join(b.get("text", "") for b in content)))
    return out


async def test_session_carries_the_conversation_and_resumes_on_the_next_run(autojump_clock, tmp_path):
    provider = RecordingMock()
    result, _ = await run_spec(loads(SESSION), tmp_path, provider=provider)
    assert result.status == "ok", result.error
    one, two, other = provider.requests
    assert _texts(one.messages) == [("user", "My name is Ada.")]
    assert _texts(two.messages) == [
        ("user", "My name is Ada."), ("assistant", "Hello Ada."), ("user", "What is my name?"),
    ]
    assert _texts(other.messages) == [("user", "Fresh start")]  # another session: its own history
    stored = json.loads((tmp_path / "ws" / ".sluiceway" / "sessions" / "talk.json").read_text())
    assert _texts(stored["messages"])[-1] == ("assistant", "Your name is Ada.")
    assert not (tmp_path / "ws" / ".sluiceway" / "sessions" / "elsewhere.json").exists()  # persist: false

    # the next run resumes from the file
    provider2 = RecordingMock()
    again = loads(SESSION.replace("My name is Ada.", "Still me."))
    result2, _ = await run_spec(again, tmp_path, provider=provider2)
    assert result2.status == "ok"
    assert _texts(provider2.requests[0].messages) == [
        ("user", "My name is Ada."), ("assistant", "Hello Ada."), ("user", "What is my name?"),
        ("assistant", "Your name is Ada."), ("user", "Still me."),
    ]


async def test_session_max_history_trims(autojump_clock, tmp_path):
    yaml = SESSION.replace("persist: true}", "persist: true, max_history: 2}")
    provider = RecordingMock()
    result, _ = await run_spec(loads(yaml), tmp_path, provider=provider)
    assert result.status == "ok"
    # after step one the kept history is its last 2 messages (user, assistant)
    assert _texts(provider.requests[1].messages) == [
        ("user", "My name is Ada."), ("assistant", "Hello Ada."), ("user", "What is my name?"),
    ]
    stored = json.loads((tmp_path / "ws" / ".sluiceway" / "sessions" / "talk.json").read_text())
    assert _texts(stored["messages"]) == [("user", "What is my name?"), ("assistant", "Your name is Ada.")]


async def test_corrupt_session_file_is_a_clear_error_and_is_kept(autojump_clock, tmp_path):
    path = tmp_path / "ws" / ".sluiceway" / "sessions" / "talk.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    provider = RecordingMock()
    result, events = await run_spec(loads(SESSION), tmp_path, provider=provider)
    assert result.status == "failed" and result.failed_step == "one"
    assert isinstance(result.error, SessionError)
    assert "corrupt" in str(result.error) and str(path) in str(result.error)
    assert path.read_text() == "{not json"  # never silently reset
    assert provider.requests == []


EXTRACT = """
name: ex
steps:
  - name: data
    type: claude_extract
    prompt: give json
    extraction_config:
      format: json
      schema: {type: object, required: [n], properties: {n: {type: integer}}}
    mock: {response: "Here you go:\\n```json\\n{\\"n\\": 3}\\n```\\nDone."}
  - name: summary
    type: claude_extract
    prompt: sum up
    extraction_config: {format: summary}
    mock: {response: "# Title\\n\\nFirst. Second. Third. Fourth.\\n\\nMore."}
  - name: use
    type: claude
    prompt: "n is {{steps.data.output.n}}"
"""


async def test_extract_puts_the_value_in_output_before_done(autojump_clock, tmp_path):
    provider = RecordingMock()
    result, events = await run_spec(loads(EXTRACT), tmp_path, provider=provider)
    assert result.status == "ok", result.error
    assert result.steps["data"].output == {"n": 3}
    assert result.steps["summary"].output == "First. Second. Third."
    done = of(events, "data")[-1]
    assert isinstance(done, Done) and done.response.output == {"n": 3}
    assert provider.requests[2].messages[-1]["content"] == "n is 3"


async def test_failed_extraction_is_the_steps_error_quoting_the_text(autojump_clock, tmp_path):
    yaml = EXTRACT.replace('{\\"n\\": 3}', '{\\"n\\": \\"three\\"}')
    result, events = await run_spec(loads(yaml), tmp_path)
    assert result.status == "failed" and result.failed_step == "data"
    assert isinstance(result.error, StepError)
    message = str(result.error)
    assert "schema" in message and "three" in message and "Here you go" in message
    step = of(events, "data")
    assert names(step)[-1] == "Failed" and isinstance(step[-1], Failed)
    assert step[-1].partial.text.startswith("Here you go")
    # the streamed text is kept in the step's file
    assert (result.run_dir / "data.txt").read_text().startswith("Here you go")


async def test_session_prompt_is_rendered_once(autojump_clock, tmp_path):
    spec = loads("""
name: braces
steps:
  - name: first
    type: claude
    prompt: hi
    mock: {response: "literal {{vars.nope}} braces"}
  - name: s
    type: claude_session
    prompt: [{type: previous_response, step: first}]
    session_config: {session_name: b}
""")
    provider = RecordingMock()
    result, _ = await run_spec(spec, tmp_path, provider=provider)
    assert result.status == "ok", result.error
    assert provider.requests[1].messages[-1]["content"] == "literal {{vars.nope}} braces"
