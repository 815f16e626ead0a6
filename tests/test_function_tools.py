"""Function tools: ``@sluiceway.tool``, its schema and validation, and every step type's tool loop."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict
from urllib.parse import quote

import attrs
import pytest
import trio
from sluiceway.engine import Done, ToolResult, ToolUse
from sluiceway.specs import load
from sluiceway.tools import StepTools, ToolInputError

import sluiceway


@attrs.frozen
class Point:
    """A point."""

    x: int
    y: int = 0


class Query(TypedDict):
    text: str
    limit: NotRequired[int]


@sluiceway.tool
def search(
    query: Query,
    mode: Literal["fast", "deep"] = "fast",
    where: Annotated[Point | None, "Where to look"] = None,
) -> dict[str, Any]:
    """Search the index.

    Args:
        query: What to look for.
        mode: How hard to look.
    """
    return {"text": query["text"], "mode": mode, "x": where.x if where else None}


def test_the_schema_comes_from_the_type_hints_and_the_docstring() -> None:
    assert search.name == "search"
    assert search.description == "Search the index."
    schema = search.input_schema
    assert schema["required"] == ["query"] and schema["additionalProperties"] is False
    query = schema["properties"]["query"]
    assert query["properties"] == {"text": {"type": "string"}, "limit": {"type": "integer"}}
    assert query["required"] == ["text"] and query["description"] == "What to look for."
    assert schema["properties"]["mode"] == {"enum": ["fast", "deep"], "description": "How hard to look."}
    where = schema["properties"]["where"]
    assert where["description"] == "Where to look"
    assert where["anyOf"][0]["properties"] == {"x": {"type": "integer"}, "y": {"type": "integer"}}
    assert where["anyOf"][0]["required"] == ["x"] and where["anyOf"][1] == {"type": "null"}
    assert search({"text": "a"}) == {"text": "a", "mode": "fast", "x": None}  # still a function


def test_input_is_validated_with_cattrs_before_the_call() -> None:
    assert search.arguments({"query": {"text": "a"}, "where": {"x": 2}}) == {
        "query": {"text": "a"}, "where": Point(2, 0),
    }
    for bad, words in [
        ({}, "missing required parameter 'query'"),
        ({"query": {"text": 3}}, "expected a string"),
        ({"query": {"text": "a"}, "mode": "slow"}, "mode"),
        ({"query": {"text": "a"}, "nope": 1}, "unknown parameter(s) 'nope'"),
        ({"query": {"text": "a"}, "where": {"x": "1"}}, "expected an integer"),
    ]:
        with pytest.raises(ToolInputError, match=words.replace("(", r"\(").replace(")", r"\)")):
            search.arguments(bad)


async def test_errors_and_timeouts_are_error_results_the_model_sees(autojump_clock: Any) -> None:
    called = []

    @sluiceway.tool
    def boom(n: int) -> str:
        """Fail."""
        called.append(n)
        raise RuntimeError("no luck")

    @sluiceway.tool(timeout=1.0)
    async def slow() -> str:
        """Take long."""
        await trio.sleep(10)
        return "late"

    tools = StepTools(step="s", functions=[boom, slow])
    assert await tools.run("boom", {"n": 1}) == ("boom failed: RuntimeError: no luck", True)
    content, is_error = await tools.run("boom", {"n": "1"})
    assert is_error and content.startswith("invalid input for boom") and called == [1]
    assert tools.timeout_for("slow") == 1.0 and tools.timeout_for("boom") is None
    response = await sluiceway.invoke(
        "go", tools=[slow], mock={"tool_calls": [{"name": "slow", "input": {}}], "response": "ok"},
    )
    result = [b for m in response.messages for b in m.content if getattr(b, "type", "") == "tool_result"]
    assert result[0].is_error and result[0].content == "tool 'slow' timed out after 1 s"
    assert response.text.endswith("ok")


async def test_invoke_runs_a_function_tool_and_emits_its_events() -> None:
    events: list[Any] = []

    @sluiceway.tool
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    response = await sluiceway.invoke(
        "add", tools=[add], on_event=events.append,
        mock={"tool_calls": [{"name": "add", "input": {"a": 2, "b": 3}}], "response": "five"},
    )
    uses = [e for e in events if isinstance(e, ToolUse)]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [(u.name, u.input) for u in uses] == [("add", {"a": 2, "b": 3})]
    assert [(r.name, r.content, r.is_error) for r in results] == [("add", "5", False)]
    assert response.status == "ok"


TOOLS_MODULE = '''
import sluiceway

@sluiceway.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b

@sluiceway.tool
def explode(why: str) -> str:
    """Always fails."""
    raise ValueError(why)
'''

_MOCK = '{tool_calls: [{name: add, input: {a: 2, b: 3}}], response: "the sum is 5"}'

#: step type -> its YAML (``{options}`` and ``{mock}`` filled in per mode).
STEP_YAML = {
    "claude": "type: claude\n    prompt: add",
    "claude_smart": "type: claude_smart\n    preset: development\n    prompt: add",
    "claude_robust": "type: claude_robust\n    prompt: add",
    "claude_session": "type: claude_session\n    session_config: {session_name: s}\n    prompt: add",
    "claude_extract": "type: claude_extract\n    extraction_config: {format: text}\n    prompt: add",
    "llm": "type: llm\n    provider: claude\n    prompt: add",
    "claude_batch": "type: claude_batch\n    tasks: [{prompt: add}]",
    "parallel_claude": "type: parallel_claude\n    parallel_tasks: [{id: a, prompt: add, mock: MOCK}]",
}


def _spec(tmp_path: Path, step_type: str, options: str, mock: str | None) -> Path:
    (tmp_path / "my_tools.py").write_text(TOOLS_MODULE)
    body = STEP_YAML[step_type].replace("MOCK", mock or "{}")
    text = f"name: t\nsteps:\n  - name: s\n    {body}\n    claude_options: {options}\n"
    if mock is not None and step_type != "parallel_claude":
        text += f"    mock: {mock}\n"
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def _tool_results(events: list[Any]) -> list[tuple[str, str, bool]]:
    return [(e.name, e.content, e.is_error) for e in events if isinstance(e, ToolResult)]


@pytest.mark.parametrize("step_type", sorted(STEP_YAML))
async def test_every_step_type_runs_function_tools_from_yaml_in_mock_mode(
    tmp_path: Path, step_type: str
) -> None:
    path = _spec(tmp_path, step_type, "{tools: [my_tools.add]}", _MOCK)
    events: list[Any] = []
    result = await sluiceway.run(
        load(path), output_dir=tmp_path / "out", workspace=tmp_path, handlers=[], on_event=events.append
    )
    assert result.status == "ok", result.error
    assert _tool_results(events) == [("add", "5", False)]


@pytest.mark.parametrize("step_type", sorted(STEP_YAML))
async def test_every_step_type_runs_function_tools_in_live_mode(
    tmp_path: Path, step_type: str, fake_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.reset()  # requests_seen: this test's requests only
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    model = "fake:tool_loop?tool=add&input=" + quote(json.dumps({"a": 2, "b": 3}))
    path = _spec(tmp_path, step_type, json.dumps({"tools": ["my_tools.add"], "model": model}), None)
    events: list[Any] = []
    result = await sluiceway.run(
        load(path), mode="live", output_dir=tmp_path / "out", workspace=tmp_path, handlers=[],
        on_event=events.append,
    )
    assert result.status == "ok", result.error
    assert _tool_results(events) == [("add", "5", False)]
    texts = [e.response.text for e in events if isinstance(e, Done) and e.response.text]
    assert texts and all(t.startswith("tool said: 5") for t in texts)
    offered = [t["name"] for t in fake_api.requests_seen[0]["body"]["tools"]]
    preset = ["Read", "Write", "Edit", "Glob", "Grep", "LS"] if step_type == "claude_smart" else []
    assert offered == [*preset, "add"]  # built-in tools first (the development preset's)


async def test_a_tool_exception_is_an_error_result_and_event(tmp_path: Path) -> None:
    mock = '{tool_calls: [{name: explode, input: {why: "bad day"}}], response: "sorry"}'
    path = _spec(tmp_path, "claude", "{tools: [my_tools.explode]}", mock)
    events: list[Any] = []
    result = await sluiceway.run(load(path), output_dir=tmp_path / "out", handlers=[], on_event=events.append)
    assert result.status == "ok", result.error
    assert _tool_results(events) == [("explode", "explode failed: ValueError: bad day", True)]


async def test_python_tools_argument_and_a_bad_dotted_path(tmp_path: Path) -> None:
    @sluiceway.tool
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    mock = '{tool_calls: [{name: shout, input: {text: hi}}], response: "done"}'
    path = _spec(tmp_path, "claude", "{}", mock)
    events: list[Any] = []
    result = await sluiceway.run(
        load(path), output_dir=tmp_path / "out", tools=[shout], handlers=[], on_event=events.append
    )
    assert result.status == "ok"
    assert _tool_results(events) == [("shout", "HI", False)]
    path.write_text(path.read_text().replace("claude_options: {}", "claude_options: {tools: [my_tools.nope]}"))
    # a dotted path that names nothing is a spec error, with its line, before anything runs
    with pytest.raises(sluiceway.SpecError, match=r":\d+:\d+: steps\[0\]\.claude_options\.tools\[0\]: tool: "
                       r"module 'my_tools' has no attribute 'nope'"):
        sluiceway.load(path)


def test_allowed_tools_may_name_function_and_mcp_tools(tmp_path: Path) -> None:
    text = textwrap.dedent("""
        name: t
        steps:
          - name: s
            type: claude
            prompt: hi
            claude_options:
              tools: [my_tools.add]
              mcp_servers: {files: {command: x}}
              allowed_tools: [Read, add, mcp__files__read, mcp__files]
    """)
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    load(path)
    path.write_text(text.replace("mcp__files__read", "mcp__nope__read").replace("add,", "ad,"))
    with pytest.raises(sluiceway.SpecError) as info:
        load(path)
    message = str(info.value)
    assert "no MCP server 'nope'" in message and "unknown tool 'ad'" in message and "did you mean `add`" in message
