"""The executor on the mock provider, in virtual time: order, conditions, prompts,
passthrough, files, fresh handlers, failure and cancellation."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import trio
from sluiceway.engine import Delta, Done, Event, ModelRequest, StepStarted
from sluiceway.specs import loads

from sluiceway._errors import SpecError
from sluiceway._execution import RunOptions, execute
from sluiceway._registry import resolve_provider

# --------------------------------------------------------------------------- helpers


class RecordingProvider:
    """The mock provider, remembering every request and counting ``aclose``."""

    name = "mock"

    def __init__(self) -> None:
        self.inner = resolve_provider("mock")()
        self.requests: list[ModelRequest] = []
        self.closed = 0

    def stream(self, request: ModelRequest) -> Any:
        self.requests.append(request)
        return self.inner.stream(request)

    async def aclose(self) -> None:
        self.closed += 1
        await self.inner.aclose()


async def run_yaml(text: str, tmp_path: Path, **options: Any) -> Any:
    spec = loads(text)
    options.setdefault("output_dir", tmp_path / "out")
    options.setdefault("workspace", tmp_path)
    return await execute(spec, RunOptions(**options))


# python-step callables (imported by dotted path: the test module is importable by name)


async def watch_events(ctx: Any) -> list[tuple[str, float, str | None, str]]:
    """Record each live event of the input stream: (type, trio time, content, step)."""
    seen = []
    async for event in ctx.events:
        seen.append((type(event).__name__, trio.current_time(), getattr(event, "content", None), event.step))
    return seen


def sync_summary(ctx: Any) -> dict[str, Any]:
    return {
        "steps": sorted(ctx.steps),
        "draft_words": len(ctx.steps["draft"].text.split()),
        "vars": dict(ctx.vars),
        "args": dict(ctx.args),
        "has_events": ctx.events is not None,
    }


def read_only_first(ctx: Any) -> str:
    return "done without reading"


async def boom(ctx: Any) -> None:
    raise RuntimeError("python step exploded")


# --------------------------------------------------------------------------- tests


async def test_passthrough_sees_first_delta_before_upstream_done(tmp_path: Path, autojump_clock: Any) -> None:
    response = "one two three four five six seven eight"
    result = await run_yaml(
        f"""
name: passthrough
steps:
  - name: draft
    type: claude
    prompt: "Write"
    mock: {{response: "{response}", pattern: slow}}
  - name: watcher
    type: python
    callable: "test_executor_run:watch_events"
    input_stream: draft
""",
        tmp_path,
    )
    assert result.status == "ok", result.error
    seen = result.steps["watcher"].output
    kinds = [k for k, *_ in seen]
    assert kinds[0] == "StepStarted" and kinds[-1] == "Done"
    first_delta = kinds.index("Delta")
    assert first_delta < kinds.index("Done")
    t0 = seen[0][1]
    # slow pattern: first token after 300 ms, then a word every 150 ms: the
    # downstream sees each delta when it is produced, not at the end
    assert seen[first_delta][1] - t0 == pytest.approx(0.3, abs=0.01)
    done_at = seen[-1][1] - t0
    assert done_at == pytest.approx(0.3 + 0.15 * 7, abs=0.02)
    assert "".join(c for k, _, c, _ in seen if k == "Delta") == response
    assert result.steps["draft"].text == response
    # both ran concurrently: the watcher ended when the upstream did
    assert result.steps["watcher"].response.metrics.duration == pytest.approx(done_at, abs=0.02)


async def test_python_step_context_and_sync_callable(tmp_path: Path) -> None:
    result = await run_yaml(
        """
name: ctx
variables: {who: world, n: 1}
steps:
  - name: draft
    type: claude
    prompt: "Hello {{vars.who}}"
    mock: {response: "a b c"}
  - name: summary
    type: python
    callable: "test_executor_run.sync_summary"
    args: {k: 2}
""",
        tmp_path,
        variables={"n": 5},
    )
    assert result.status == "ok", result.error
    assert result.steps["summary"].output == {
        "steps": ["draft"],
        "draft_words": 3,
        "vars": {"who": "world", "n": 5},
        "args": {"k": 2},
        "has_events": False,
    }
    assert json.loads(result.steps["summary"].text) == result.steps["summary"].output


async def test_passthrough_consumer_that_stops_reading_does_not_block_upstream(
    tmp_path: Path, autojump_clock: Any
) -> None:
    words = " ".join(f"w{i}" for i in range(300))
    result = await run_yaml(
        f"""
name: lazy
steps:
  - name: draft
    type: claude
    prompt: "x"
    mock: {{response: "{words}"}}
  - name: lazy
    type: python
    callable: "test_executor_run:read_only_first"
    input_stream: draft
    stream_buffer_size: 2
""",
        tmp_path,
    )
    assert result.status == "ok", result.error
    assert result.steps["draft"].text == words
    assert result.steps["lazy"].text == "done without reading"


async def test_conditions_skip_and_run(tmp_path: Path) -> None:
    provider = RecordingProvider()
    result = await run_yaml(
        """
name: cond
variables: {flag: false}
steps:
  - name: review
    type: claude
    prompt: "review"
    mock: {response: "Verdict: APPROVED"}
  - name: ship
    type: claude
    prompt: "ship"
    condition: "steps.review.text contains 'APPROVED'"
    mock: {response: "shipped"}
  - name: rework
    type: claude
    prompt: "rework"
    condition: "not steps.review.text contains 'APPROVED'"
  - name: flagged
    type: claude
    prompt: "flagged"
    condition: "vars.flag"
  - name: after_skip
    type: claude
    prompt: "after"
    condition: "steps.rework.status == 'skipped' and vars.mode == 'x'"
    mock: {response: "ran"}
""",
        tmp_path,
        provider=provider,
        variables={"mode": "x"},
    )
    assert result.status == "ok", result.error
    statuses = {name: s.status for name, s in result.steps.items()}
    assert statuses == {
        "review": "ok",
        "ship": "ok",
        "rework": "skipped",
        "flagged": "skipped",
        "after_skip": "ok",
    }
    assert [r.step for r in provider.requests] == ["review", "ship", "after_skip"]
    data = json.loads((result.run_dir / "result.json").read_text())
    assert data["steps"]["rework"]["status"] == "skipped"
    assert not (result.run_dir / "rework.txt").exists()


async def test_prompt_parts_previous_response_extract_and_file(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("NOTES FROM FILE", encoding="utf-8")
    provider = RecordingProvider()
    result = await run_yaml(
        """
name: parts
variables: {topic: rivers}
steps:
  - name: plan
    type: claude
    prompt: "plan {{vars.topic}}"
    mock: {response: 'Here you go: {"plan": {"steps": ["alpha", "beta"]}, "score": 9}'}
  - name: use
    type: claude
    prompt:
      - {type: static, content: "Second step is:"}
      - {type: previous_response, step: plan, extract: "$.plan.steps[1]"}
      - {type: previous_response, step: plan, extract: "re:score\\": (\\\\d+)"}
      - {type: file, path: notes.md}
      - {type: static, content: "run {{execution_id}} step {{step}}: {{steps.plan.text}}"}
""",
        tmp_path,
        provider=provider,
    )
    assert result.status == "ok", result.error
    assert provider.requests[0].messages[0]["content"] == "plan rivers"
    plan_text = result.steps["plan"].text
    assert provider.requests[1].messages[0]["content"] == "\n\n".join(
        [
            "Second step is:",
            "beta",
            "9",
            "NOTES FROM FILE",
            f"run {result.run_id} step use: {plan_text}",
        ]
    )


async def test_previous_response_extract_failure_fails_the_step(tmp_path: Path) -> None:
    result = await run_yaml(
        """
name: bad_extract
steps:
  - name: plan
    type: claude
    prompt: "plan"
    mock: {response: "no json here"}
  - name: use
    type: claude
    prompt:
      - {type: previous_response, step: plan, extract: "$.a"}
  - name: never
    type: claude
    prompt: "never"
""",
        tmp_path,
    )
    assert result.status == "failed"
    assert result.failed_step == "use"
    assert "extract" in str(result.error) and "'use'" in str(result.error)
    assert "never" not in result.steps


async def test_defaults_merge_under_step_options(tmp_path: Path) -> None:
    provider = RecordingProvider()
    await run_yaml(
        """
name: merge
defaults:
  claude_options: {model: claude-haiku-4-5, temperature: 0.5, max_tokens: 100, system_prompt: "Be brief."}
steps:
  - name: a
    type: claude
    prompt: "a"
    claude_options: {temperature: 0.1, append_system_prompt: "Use French."}
  - name: b
    type: claude
    prompt: "b"
    claude_options: {model: claude-opus-4-1}
""",
        tmp_path,
        provider=provider,
    )
    a, b = provider.requests
    assert (a.model, a.temperature, a.max_tokens, a.system) == (
        "claude-haiku-4-5",
        0.1,
        100,
        "Be brief.\n\nUse French.",
    )
    assert (b.model, b.temperature, b.max_tokens, b.system) == ("claude-opus-4-1", 0.5, 100, "Be brief.")
    assert provider.closed == 1


async def test_output_files_and_result_json(tmp_path: Path) -> None:
    result = await run_yaml(
        """
name: files
steps:
  - name: draft
    type: claude
    prompt: "x"
    output_to_file: reports/draft.md
    mock: {response: "The draft text.", model: claude-sonnet-4-5}
  - name: data
    type: python
    callable: "test_executor_run.sync_summary"
    output_to_file: data.json
""",
        tmp_path,
    )
    assert result.status == "ok", result.error
    out = tmp_path / "out"
    assert result.run_dir == out / result.run_id
    assert (out / "reports" / "draft.md").read_text() == "The draft text."
    assert (result.run_dir / "draft.txt").read_text() == "The draft text."
    assert json.loads((out / "data.json").read_text())["draft_words"] == 3
    data = json.loads((result.run_dir / "result.json").read_text())
    assert data["run_id"] == result.run_id
    assert data["status"] == "ok"
    assert list(data["steps"]) == ["draft", "data"]
    draft = data["steps"]["draft"]
    assert draft["status"] == "ok"
    assert draft["text"] == "The draft text."
    assert draft["usage"]["output_tokens"] >= 1 and draft["usage"]["input_tokens"] >= 1
    assert draft["metrics"]["delta_count"] == 3
    assert draft["output_file"] == str(out / "reports" / "draft.md")
    assert data["steps"]["data"]["output"]["draft_words"] == 3
    assert data["usage"]["output_tokens"] == draft["usage"]["output_tokens"]


async def test_output_to_file_may_not_escape(tmp_path: Path) -> None:
    """A rendered path that escapes fails the step before its model call (issue 14, item 7: it was
    refused only after the step ran). A static ``../../escaped.txt`` is now refused at load, below."""
    provider = CountingProvider()
    result = await run_yaml(
        """
name: escape
variables: {up: "../.."}
steps:
  - name: draft
    type: claude
    prompt: "x"
    output_to_file: "{{vars.up}}/escaped.txt"
""",
        tmp_path,
        provider=provider,
    )
    assert result.status == "failed"
    assert "escapes the output folder" in str(result.error)
    assert "'../../escaped.txt' (from '{{vars.up}}/escaped.txt')" in str(result.error)
    assert not (tmp_path.parent / "escaped.txt").exists()
    assert provider.calls == 0  # refused before the step's model call
    assert result.steps["draft"].status == "failed"


def test_a_static_output_to_file_that_escapes_is_a_spec_error_with_its_line() -> None:
    text = """
name: escape
steps:
  - name: draft
    type: claude
    prompt: "x"
    output_to_file: ../../escaped.txt
  - name: later
    type: claude
    prompt: "x"
    output_to_file: "../{{execution_id}}/x.md"
"""
    with pytest.raises(SpecError) as info:
        loads(text, source="esc.yaml")
    issues = info.value.issues
    assert [(i.file, i.line, i.path) for i in issues] == [
        ("esc.yaml", 7, "steps[0].output_to_file"),
        ("esc.yaml", 11, "steps[1].output_to_file"),
    ]
    assert "leaves the output folder" in issues[0].message
    # inside the folder, with or without templates, and absolute paths: accepted
    loads(text.replace("../../escaped.txt", "a/../b.txt").replace("../{{execution_id}}", "{{execution_id}}/.."))


async def test_output_to_file_templates_are_rendered_per_run(tmp_path: Path) -> None:
    """``{{execution_id}}/{{step}}-{{vars.x}}.md`` is rendered like a prompt: each run writes its
    own file (it was written literally, each run overwriting the last)."""
    spec = """
name: rendered
variables: {x: first}
steps:
  - name: draft
    type: claude
    prompt: "x"
    output_to_file: "{{execution_id}}/{{step}}-{{vars.x}}.md"
    mock: {response: "The draft text."}
"""
    one = await run_yaml(spec, tmp_path)
    two = await run_yaml(spec, tmp_path, variables={"x": "second"})
    out = tmp_path / "out"
    for result, x in ((one, "first"), (two, "second")):
        assert result.status == "ok", result.error
        target = out / result.run_id / f"draft-{x}.md"
        assert target.read_text() == "The draft text."
        assert result.steps["draft"].output_file == str(target)
    assert one.run_id != two.run_id
    assert not any("{{" in str(p) for p in out.rglob("*"))


class CountingProvider:
    """The mock provider, counting model calls."""

    name = "counting"

    def __init__(self) -> None:
        from sluiceway.providers import MockProvider

        self.inner = MockProvider()
        self.calls = 0

    def stream(self, request: ModelRequest) -> Any:
        self.calls += 1
        return self.inner.stream(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


BUFFER_SPEC = """
name: buffers
steps:
  - name: draft
    type: claude
    prompt: "x"
    stream_handler: buffer
    mock: {response: "alpha beta gamma"}
"""


async def test_fresh_handler_instances_per_run(tmp_path: Path) -> None:
    first = await run_yaml(BUFFER_SPEC, tmp_path)
    second = await run_yaml(BUFFER_SPEC, tmp_path)
    (h1,) = first.handlers["draft"]
    (h2,) = second.handlers["draft"]
    assert h1 is not h2
    assert h1.text() == h2.text() == "alpha beta gamma"
    assert {e.run_id for e in h1.events} == {first.run_id}
    assert {e.run_id for e in h2.events} == {second.run_id}
    assert len(h1.events) == len(h2.events)  # nothing of run 1 bled into run 2
    assert first.run_id != second.run_id


async def test_stream_false_attaches_no_handlers(tmp_path: Path) -> None:
    result = await run_yaml(BUFFER_SPEC.replace("stream_handler: buffer", "stream_handler: buffer\n    stream: false"), tmp_path)
    assert result.handlers["draft"] == []
    assert result.steps["draft"].text == "alpha beta gamma"
    nostream = await run_yaml(BUFFER_SPEC, tmp_path, stream=False)
    assert nostream.handlers["draft"] == []


async def test_handler_override_and_debug_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_STREAM_DEBUG", "1")
    err = io.StringIO()
    result = await run_yaml(
        BUFFER_SPEC.replace("stream_handler: buffer", "stream_handler: buffer\n    stream_handler_opts: {max_size: 5}"),
        tmp_path,
        handlers=("buffer",),
        stderr=err,
    )
    names = [type(h).__name__ for h in result.handlers["draft"]]
    assert names == ["BufferHandler", "DebugHandler"]
    assert len(result.handlers["draft"][0].events) == 5  # the step's max_size option applied
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("StepStarted step=draft")
    assert any(line.startswith("Done step=draft") for line in lines)


async def test_failed_step_stops_the_run(tmp_path: Path) -> None:
    provider = RecordingProvider()
    result = await run_yaml(
        """
name: failing
steps:
  - name: ok
    type: claude
    prompt: "x"
  - name: broken
    type: claude
    prompt: "y"
    mock: {response: "a b c d", error: overloaded, error_after: 2}
  - name: later
    type: claude
    prompt: "z"
""",
        tmp_path,
        provider=provider,
    )
    assert result.status == "failed"
    assert result.failed_step == "broken"
    assert type(result.error).__name__ == "OverloadedError"
    assert [r.step for r in provider.requests] == ["ok", "broken"]
    assert provider.closed == 1
    data = json.loads((result.run_dir / "result.json").read_text())
    assert data["status"] == "failed"
    assert data["failed_step"] == "broken"
    assert data["steps"]["broken"]["status"] == "failed"
    assert "later" not in data["steps"]
    with pytest.raises(Exception) as info:
        result.raise_for_status()
    assert type(info.value).__name__ == "PipelineError"


async def test_python_step_failure(tmp_path: Path) -> None:
    result = await run_yaml(
        """
name: pyfail
steps:
  - name: p
    type: python
    callable: "test_executor_run:boom"
""",
        tmp_path,
    )
    assert result.status == "failed"
    assert str(result.error) == "python step exploded"


async def test_cancelled_run_writes_cancelled_result(tmp_path: Path, autojump_clock: Any) -> None:
    provider = RecordingProvider()
    holder: list[Any] = []

    class Keep:
        def started(self, value: Any = None) -> None:
            holder.append(value)

    spec = loads(
        """
name: cancel
steps:
  - name: slow
    type: claude
    prompt: "x"
    stream_handler: buffer
    mock: {response: "a b c d e f g h i j", pattern: slow}
  - name: never
    type: claude
    prompt: "y"
"""
    )
    with trio.move_on_after(0.3 + 0.15 * 3 + 0.01):
        await execute(
            spec,
            RunOptions(output_dir=tmp_path / "out", workspace=tmp_path, provider=provider),
            task_status=Keep(),  # type: ignore[arg-type]
        )
    (result,) = holder
    assert result.status == "cancelled"
    assert provider.closed == 1
    (buffer,) = result.handlers["slow"]
    assert buffer.closed
    assert buffer.text() == "a b c d "
    assert type(buffer.events[-1]).__name__ == "Cancelled"
    data = json.loads((result.run_dir / "result.json").read_text())
    assert data["status"] == "cancelled"
    assert data["steps"]["slow"]["status"] == "cancelled"
    assert "never" not in data["steps"]


async def test_prepare_rejects_bad_condition_and_callable(tmp_path: Path) -> None:
    from sluiceway import SpecError

    spec = loads(
        """
name: bad
steps:
  - name: a
    type: claude
    prompt: "x"
    condition: "vars.flag =="
  - name: p
    type: python
    callable: "no_such_module_xyz:fn"
"""
    )
    with pytest.raises(SpecError) as info:
        await execute(spec, RunOptions(output_dir=tmp_path / "out"))
    text = str(info.value)
    assert "<string>: steps[0].condition: condition 'vars.flag ==': unexpected end" in text
    assert "<string>: steps[1].callable: " in text and "no_such_module_xyz" in text
    assert not (tmp_path / "out").exists()


def _events_of(kind: type[Event], events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


async def test_run_event_stream_through_execute(tmp_path: Path) -> None:
    send, receive = trio.open_memory_channel[Event](1)
    events: list[Event] = []
    async with trio.open_nursery() as nursery:

        async def collect() -> None:
            async for event in receive:
                events.append(event)

        nursery.start_soon(collect)
        result = await execute(
            loads(BUFFER_SPEC),
            RunOptions(output_dir=tmp_path / "out", workspace=tmp_path),
            send_events=send,
        )
    assert type(events[0]).__name__ == "RunStarted"
    assert type(events[-1]).__name__ == "RunFinished"
    assert events[-1].status == "ok"
    assert _events_of(StepStarted, events)[0].step == "draft"
    assert "".join(e.content for e in _events_of(Delta, events)) == result.steps["draft"].text
    assert len(_events_of(Done, events)) == 1


RECORD_SPEC = """
name: recorded
steps:
  - name: a
    type: claude
    prompt: "first"
    mock: {response: "recorded answer one", pattern: slow}
  - name: b
    type: claude
    prompt: "{{steps.a.text}}"
    mock: {response: "second recorded answer"}
"""


async def test_record_then_replay(tmp_path: Path, autojump_clock: Any) -> None:
    cassette = tmp_path / "run.cassette.jsonl"
    recorded = await run_yaml(RECORD_SPEC, tmp_path, record=str(cassette))
    assert recorded.status == "ok", recorded.error
    assert cassette.exists()
    # the replay does not consult the mock script: change it to prove the text comes from the cassette
    replay_spec = RECORD_SPEC.replace("recorded answer one", "SOMETHING ELSE")
    start = trio.current_time()
    replayed = await run_yaml(replay_spec, tmp_path, mode="replay", cassette=str(cassette))
    assert replayed.status == "ok", replayed.error
    assert [s.text for s in replayed.steps.values()] == ["recorded answer one", "second recorded answer"]
    # replayed at recorded pace: first token after 300 ms, 3 words at 150 ms
    assert replayed.steps["a"].response.metrics.time_to_first_token == pytest.approx(0.3, abs=0.01)
    assert trio.current_time() - start == pytest.approx(0.6, abs=0.05)
    instant = await run_yaml(replay_spec, tmp_path, mode="replay", cassette=str(cassette), instant=True)
    assert instant.steps["a"].text == "recorded answer one"
    assert instant.steps["a"].response.metrics.duration < 0.01


async def test_replay_of_another_pipeline_is_a_spec_error(tmp_path: Path, autojump_clock: Any) -> None:
    from sluiceway import SpecError

    cassette = tmp_path / "c.jsonl"
    await run_yaml(RECORD_SPEC, tmp_path, record=str(cassette))
    with pytest.raises(SpecError, match="recorded for pipeline 'recorded'"):
        await run_yaml(RECORD_SPEC.replace("name: recorded", "name: other"), tmp_path, mode="replay", cassette=str(cassette))


async def test_passthrough_upstream_failure_reaches_the_follower(tmp_path: Path, autojump_clock: Any) -> None:
    result = await run_yaml(
        """
name: upstream_fails
steps:
  - name: draft
    type: claude
    prompt: "x"
    mock: {response: "a b c d e", pattern: slow, error: connection_lost, error_after: 2}
  - name: watcher
    type: python
    callable: "test_executor_run:watch_events"
    input_stream: draft
  - name: later
    type: claude
    prompt: "never"
""",
        tmp_path,
    )
    assert result.status == "failed" and result.failed_step == "draft"
    assert type(result.error).__name__ == "StreamInterruptedError"
    seen = result.steps["watcher"].output
    assert result.steps["watcher"].status == "ok"
    assert [k for k, *_ in seen] == ["StepStarted", "Delta", "Delta", "Failed"]
    assert "later" not in result.steps


async def test_step_timeout_ms_fails_the_step(tmp_path: Path, autojump_clock: Any) -> None:
    start = trio.current_time()
    result = await run_yaml(
        """
name: timeout
steps:
  - name: slow
    type: claude
    prompt: "x"
    stream_handler: buffer
    claude_options: {timeout_ms: 500}
    mock: {response: "a b c d e f g", pattern: slow}
""",
        tmp_path,
    )
    assert result.status == "failed"
    assert type(result.error).__name__ == "ProviderTimeoutError"
    assert "timeout_ms=500" in str(result.error)
    assert trio.current_time() - start == pytest.approx(0.5, abs=0.01)
    (buffer,) = result.handlers["slow"]
    assert buffer.closed and buffer.text() == "a b "


async def test_llm_step_providers(tmp_path: Path) -> None:
    result = await run_yaml(
        """
name: llm
steps:
  - name: via_mock
    type: llm
    provider: mock
    prompt: "x"
    mock: {response: "from mock"}
  - name: via_class
    type: llm
    provider: "test_executor_run:RecordingProvider"
    prompt: "y"
    mock: {response: "from class"}
  - name: again
    type: llm
    provider: "test_executor_run:RecordingProvider"
    prompt: "z"
""",
        tmp_path,
    )
    assert result.status == "ok", result.error
    assert result.steps["via_mock"].text == "from mock"
    assert result.steps["via_class"].text == "from class"
    assert result.steps["again"].text


async def test_follower_of_a_skipped_upstream_gets_an_empty_stream(tmp_path: Path) -> None:
    result = await run_yaml(
        """
name: skipped_upstream
variables: {go: false}
steps:
  - name: draft
    type: claude
    prompt: "x"
    condition: "vars.go"
  - name: watcher
    type: python
    callable: "test_executor_run:watch_events"
    input_stream: draft
  - name: quiet
    type: python
    callable: "test_executor_run:watch_events"
    input_stream: draft
    condition: "vars.go"
""",
        tmp_path,
    )
    assert result.status == "ok", result.error
    assert [(n, s.status) for n, s in result.steps.items()] == [
        ("draft", "skipped"),
        ("watcher", "ok"),
        ("quiet", "skipped"),
    ]
    assert result.steps["watcher"].output == []


async def test_input_stream_must_name_an_earlier_model_step(tmp_path: Path) -> None:
    from sluiceway.specs import ClaudeStep, Pipeline, PythonStep

    from sluiceway import SpecError

    # built in Python: the YAML loader refuses this too, but the executor must not rely on it
    spec = Pipeline(
        name="bad_stream",
        steps=(
            PythonStep(name="p1", callable="test_executor_run:watch_events", input_stream="later"),
            ClaudeStep(name="later", prompt="x"),
            PythonStep(name="p2", callable="test_executor_run:watch_events", input_stream="p1"),
        ),
    )
    with pytest.raises(SpecError) as info:
        await execute(spec, RunOptions(output_dir=tmp_path / "out"))
    assert [(i.path, i.message) for i in info.value.issues] == [
        ("steps[0].input_stream", "'later' is not an earlier step"),
        ("steps[2].input_stream", "'p1' is a python step; it has no event stream"),
    ]
