"""``llm`` providers (claude, mock, a third-party class), ``python``, and every step type live (fake API)."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sluiceway.engine import (
    BlockStart,
    BlockStop,
    Done,
    MessageDeltaInfo,
    MessageStart,
    MessageStop,
    ModelRequest,
    TextChunk,
    ToolResult,
    ToolUse,
    Usage,
)
from sluiceway.specs import loads
from steptypes_helpers import names, of, run_spec

from sluiceway.testing import check_invariants


class ShoutProvider:
    """A third-party provider: answers with the prompt in capitals, word by word."""

    name = "shout"
    instances: list[ShoutProvider] = []

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []
        self.closed = False
        ShoutProvider.instances.append(self)

    @asynccontextmanager
    async def stream(self, request: ModelRequest):
        self.requests.append(request)
        words = str(request.messages[-1]["content"]).upper().split(" ")
        events = [MessageStart(model="shout-1", usage=Usage(input_tokens=len(words))), BlockStart(0, "text")]
        events += [TextChunk(0, w + (" " if i < len(words) - 1 else "")) for i, w in enumerate(words)]
        events += [BlockStop(0), MessageDeltaInfo(stop_reason="end_turn", usage=Usage(output_tokens=len(words))),
                   MessageStop()]

        yield _Events(events)

    async def aclose(self) -> None:
        self.closed = True


class _Events:
    """An async iterator over a list (not an async generator: the engine may stop early)."""

    def __init__(self, events: list[Any]) -> None:
        self.events = iter(events)

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> Any:
        for event in self.events:
            return event
        raise StopAsyncIteration


def summarize(ctx: Any) -> dict[str, Any]:
    return {"shout": ctx.steps["third"].text, "mock": ctx.steps["mocked"].text, "n": ctx.args["n"]}


LLM = """
name: providers
steps:
  - name: third
    type: llm
    provider: test_steptypes_llm_live.ShoutProvider
    prompt: "hello there {{vars.who}}"
  - name: mocked
    type: llm
    provider: mock
    prompt: say something
    mock: {response: "from the mock"}
  - name: py
    type: python
    callable: "test_steptypes_llm_live:summarize"
    args: {n: 3}
variables: {who: world}
"""


async def test_llm_providers_and_python(autojump_clock, tmp_path):
    ShoutProvider.instances.clear()
    result, events = await run_spec(loads(LLM), tmp_path)
    assert result.status == "ok", result.error
    assert result.steps["third"].text == "HELLO THERE WORLD"
    (shout,) = ShoutProvider.instances
    assert shout.closed and shout.requests[0].tools == ()  # llm: no tools unless asked
    deltas = [e.content for e in of(events, "third") if type(e).__name__ == "Delta"]
    assert deltas == ["HELLO ", "THERE ", "WORLD"]
    assert of(events, "third")[0].provider == "shout"
    assert result.steps["mocked"].text == "from the mock"
    assert result.steps["py"].output == {"shout": "HELLO THERE WORLD", "mock": "from the mock", "n": 3}
    check_invariants(events)


def fake(scenario: str) -> str:
    return "fake:" + scenario


LIVE = f"""
name: live
defaults:
  claude_options: {{model: "{fake('text?deltas=3')}"}}
steps:
  - name: plain
    type: claude
    prompt: hi
    claude_options: {{max_turns: 2, allowed_tools: [Read], model: "{fake('tool_use?tool=Read&pieces=3')}"}}
  - name: smart
    type: claude_smart
    preset: chat
    prompt: hi
  - name: s1
    type: claude_session
    prompt: first
    session_config: {{session_name: live, persist: true}}
  - name: s2
    type: claude_session
    prompt: second
    session_config: {{session_name: live, persist: true}}
  - name: ex
    type: claude_extract
    prompt: json please
    claude_options: {{model: "{fake('text?text=' + quote('{"n": 7}'))}"}}
    extraction_config: {{format: json, schema: {{type: object, required: [n]}}}}
  - name: batch
    type: claude_batch
    prompt: "item {{{{item}}}}"
    items: [a, b, c]
    batch_config: {{max_parallel: 2}}
  - name: par
    type: parallel_claude
    parallel_tasks:
      - {{id: x, prompt: one}}
      - {{id: y, prompt: two, claude_options: {{model: "{fake('text?deltas=2')}"}}}}
  - name: robust
    type: claude_robust
    prompt: retry me
    claude_options: {{model: "{fake('error?after=2')}"}}
    retry_config: {{max_retries: 2, base_delay_ms: 1, fallback_model: "{fake('text?deltas=4')}"}}
  - name: llm
    type: llm
    provider: claude
    prompt: hi
  - name: py
    type: python
    callable: "test_steptypes_llm_live:live_summary"
"""


def live_summary(ctx: Any) -> list[str]:
    return sorted(ctx.steps)


async def test_every_step_type_live_against_the_fake_api(
    tmp_path: Path, fake_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    result, events = await run_spec(loads(LIVE), tmp_path, mode="live")
    assert result.status == "ok", (result.failed_step, result.error)
    check_invariants(events)
    # claude: the tool loop ran on the real wire: ToolUse, an error result (bad input), then max_turns
    plain = of(events, "plain")
    uses = [e for e in plain if isinstance(e, ToolUse)]
    results = [e for e in plain if isinstance(e, ToolResult)]
    assert len(uses) == 2 and len(results) == 1 and results[0].is_error
    assert uses[0].input["city"] == "Paris"
    assert result.steps["plain"].response.status == "max_turns"
    tok3 = "tok0 tok1 tok2 "
    assert result.steps["smart"].text == tok3
    assert result.steps["s1"].text == result.steps["s2"].text == tok3
    stored = json.loads((tmp_path / "ws" / ".sluiceway" / "sessions" / "live.json").read_text())
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "user", "assistant"]
    assert result.steps["ex"].output == {"n": 7}
    assert result.steps["batch"].output == [tok3] * 3
    assert {e.step for e in events if isinstance(e, Done)} >= {"batch[0]", "batch[1]", "batch[2]", "par.x", "par.y"}
    assert result.steps["par"].output == [tok3, "tok0 tok1 "]
    robust = of(events, "robust")
    assert names(robust).count("Retrying") == 1
    assert result.steps["robust"].text == "tok0 tok1 tok2 tok3 "  # the fallback attempt only
    assert result.steps["llm"].text == tok3
    assert "robust" in result.steps["py"].output
