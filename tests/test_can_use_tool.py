"""The permission hook: ``can_use_tool`` denies, allows and rewrites input, before every kind of tool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sluiceway.engine import ToolResult
from sluiceway.specs import load

import sluiceway

RAN: list[str] = []


@sluiceway.tool
def write_note(text: str) -> str:
    """Keep a note."""
    RAN.append(text)
    return f"noted: {text}"


def _results(events: list[Any]) -> list[tuple[str, str, bool]]:
    return [(e.name, e.content, e.is_error) for e in events if isinstance(e, ToolResult)]


async def _invoke(hook: Any, text: str = "secret plan") -> list[tuple[str, str, bool]]:
    events: list[Any] = []
    await sluiceway.invoke(
        "note it", tools=[write_note], can_use_tool=hook, on_event=events.append,
        mock={"tool_calls": [{"name": "write_note", "input": {"text": text}}], "response": "ok"},
    )
    return _results(events)


async def test_a_denied_call_never_runs_and_the_model_gets_the_reason() -> None:
    RAN.clear()
    seen: list[tuple[str, Any, str]] = []

    def hook(name: str, input: Any, context: sluiceway.ToolContext) -> Any:
        seen.append((name, dict(input), context.kind))
        return sluiceway.deny("notes are read-only today")

    assert await _invoke(hook) == [("write_note", "permission denied: notes are read-only today", True)]
    assert RAN == [] and seen == [("write_note", {"text": "secret plan"}, "function")]


async def test_an_allowed_call_runs_as_asked() -> None:
    RAN.clear()

    async def hook(name: str, input: Any, context: Any) -> Any:
        return sluiceway.allow()

    assert await _invoke(hook) == [("write_note", "noted: secret plan", False)]
    assert RAN == ["secret plan"]


async def test_allow_with_updated_input_rewrites_the_call() -> None:
    RAN.clear()

    def hook(name: str, input: Any, context: Any) -> Any:
        return sluiceway.allow({"text": input["text"].replace("secret", "[redacted]")})

    assert await _invoke(hook) == [("write_note", "noted: [redacted] plan", False)]
    assert RAN == ["[redacted] plan"]


HOOKS = '''
import sluiceway

def no_writes(name, input, context):
    if name == "Write" or name.startswith("mcp__"):
        return sluiceway.deny(f"{context.kind} tool {name} is not allowed")
    return True
'''


async def test_a_yaml_hook_guards_built_in_and_mcp_tools(tmp_path: Path) -> None:
    import json
    import sys

    server = str(Path(__file__).with_name("mcp_server_sample.py"))
    (tmp_path / "hooks.py").write_text(HOOKS)
    options = {
        "allowed_tools": ["Write", "Read"],
        "can_use_tool": "hooks.no_writes",
        "mcp_servers": {"sample": {"command": sys.executable, "args": [server]}},
    }
    calls = [
        {"name": "Write", "input": {"file_path": "x.txt", "content": "hi"}},
        {"name": "mcp__sample__echo", "input": {"text": "hi"}},
        {"name": "Read", "input": {"file_path": "y.txt"}},
    ]
    (tmp_path / "y.txt").write_text("why\n")
    spec = {
        "name": "t",
        "steps": [{"name": "s", "type": "claude", "prompt": "go", "claude_options": options,
                   "mock": {"tool_calls": calls, "response": "done"}}],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))
    events: list[Any] = []
    result = await sluiceway.run(
        load(path), workspace=tmp_path, output_dir=tmp_path / "out", handlers=[], on_event=events.append
    )
    assert result.status == "ok", result.error
    assert _results(events) == [
        ("Write", "permission denied: builtin tool Write is not allowed", True),
        ("mcp__sample__echo", "permission denied: mcp tool mcp__sample__echo is not allowed", True),
        ("Read", "     1\twhy", False),
    ]
    assert not (tmp_path / "x.txt").exists()
