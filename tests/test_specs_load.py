"""Loading specs: the model, aliases, wrapper, legacy forms, dumping, templates."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest
from sluiceway.specs import (
    TEMPLATE_ROOTS,
    ClaudeBatchStep,
    ClaudeOptions,
    ClaudeStep,
    FilePart,
    LlmStep,
    MockSpec,
    ParallelClaudeStep,
    ParallelTask,
    Pipeline,
    PreviousResponsePart,
    SluicewayDeprecationWarning,
    StaticPart,
    TemplateError,
    dumps,
    find_refs,
    load,
    loads,
    render,
)

import sluiceway
from sluiceway import SpecError


def _y(text: str) -> str:
    return textwrap.dedent(text)


def test_loads_builds_typed_model() -> None:
    spec = loads(
        _y(
            """\
            name: demo
            description: A demo.
            variables: {topic: trio}
            steps:
              - name: draft
                type: claude
                prompt: "Write about {{vars.topic}}"
                claude_options: {max_turns: 3, allowed_tools: [Read, Grep], temperature: 1}
                stream_handler: [simple, file]
                stream_handler_opts: {show_timestamps: false}
                stream_buffer_size: 10
                mock: {response: hello, pattern: slow}
              - id: review
                type: llm
                provider: mock
                prompt:
                  - {type: static, content: "Review:"}
                  - {type: previous_response, step: draft, extract: "$.a"}
            """
        )
    )
    assert spec == Pipeline(
        name="demo",
        description="A demo.",
        variables={"topic": "trio"},
        steps=(
            ClaudeStep(
                name="draft",
                prompt="Write about {{vars.topic}}",
                claude_options=ClaudeOptions(
                    max_turns=3, allowed_tools=("Read", "Grep"), temperature=1.0
                ),
                stream_handler=("simple", "file"),
                stream_handler_opts={"show_timestamps": False},
                stream_buffer_size=10,
                mock=MockSpec(response="hello", pattern="slow"),
            ),
            LlmStep(
                name="review",
                provider="mock",
                prompt=(
                    StaticPart(content="Review:"),
                    PreviousResponsePart(step="draft", extract="$.a"),
                ),
            ),
        ),
    )
    assert spec.source == "<string>"
    assert isinstance(spec.steps[0].claude_options.temperature, float)


def test_workflow_wrapper_equals_top_level() -> None:
    body = "name: w\nsteps:\n  - {name: a, type: claude, prompt: hi}\n"
    wrapped = "workflow:\n" + textwrap.indent(body, "  ")
    assert loads(wrapped) == loads(body)


def test_source_is_set_on_load_and_not_part_of_equality(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nsteps:\n  - {name: a, type: claude, prompt: hi}\n")
    spec = load(path)
    assert spec.source == str(path)
    assert spec == loads(path.read_text())


def test_to_yaml_round_trips_every_step_type() -> None:
    spec = loads(
        _y(
            """\
            name: all
            defaults:
              claude_options: {model: claude-sonnet-4-5}
              stream_handler: simple
              pricing: {m: {input: 1, output: 2}}
            steps:
              - {name: a, type: claude, prompt: hi}
              - {name: b, type: claude_smart, prompt: hi, preset: analysis}
              - {name: c, type: claude_session, prompt: hi, session_config: {session_name: s, persist: true}}
              - {name: d, type: claude_extract, prompt: hi, extraction_config: {format: json, schema: {type: object}}}
              - name: e
                type: claude_batch
                prompt: "Do {{item}} ({{index}})"
                items: [1, two, {three: 3}]
                tasks: [{prompt: x, name: t}]
                batch_config: {max_parallel: 2, timeout_per_task: 1.5}
              - {name: f, type: claude_robust, prompt: hi, retry_config: {max_retries: 1, retry_on: [overloaded]}}
              - name: g
                type: parallel_claude
                parallel_tasks:
                  - {id: one, prompt: "1"}
                  - {id: two, prompt: [{type: static, content: "2"}], claude_options: {max_turns: 1}}
              - {name: h, type: llm, provider: mock, prompt: hi, condition: "steps.a.text contains 'x'"}
              - {name: i, type: python, callable: "pkg.mod:fn", input_stream: h, args: {k: [1, 2]}}
            """
        )
    )
    assert [type(s).__name__ for s in spec.steps] == [
        "ClaudeStep",
        "ClaudeSmartStep",
        "ClaudeSessionStep",
        "ClaudeExtractStep",
        "ClaudeBatchStep",
        "ClaudeRobustStep",
        "ParallelClaudeStep",
        "LlmStep",
        "PythonStep",
    ]
    text = spec.to_yaml()
    assert text == dumps(spec)
    assert loads(text) == spec
    # defaults are left out, the tag and the name always come first
    assert text.splitlines()[:5] == [
        "name: all",
        "steps:",
        "- name: a",
        "  type: claude",
        "  prompt: hi",
    ]


def test_python_built_spec_dumps_and_loads() -> None:
    spec = Pipeline(
        name="py",
        variables={"f": "notes.md"},
        steps=(
            ClaudeStep(name="a", prompt=(FilePart(path="{{vars.f}}"),), stream_handler="console"),
            ClaudeBatchStep(name="b", prompt="{{item}}", items=("x", "y")),
            ParallelClaudeStep(name="p", parallel_tasks=(ParallelTask(id="t", prompt="go"),)),
        ),
    )
    assert loads(spec.to_yaml()) == spec


def test_facade_exports_load_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nsteps:\n  - {name: a, type: claude, prompt: hi, stream_handler: simple}\n"
    )
    assert sluiceway.load(path) == sluiceway.loads(path.read_text())


def test_legacy_forms_warn_once_each_and_normalize() -> None:
    text = _y(
        """\
        name: legacy
        steps:
          - name: a
            type: claude
            claude_options:
              async_streaming: true
              stream_handler: Pipeline.Streaming.Handlers.FileHandler
              stream_buffer_size: 7
              stream_handler_opts: {append: true}
              max_turns: 2
            prompt: hi
          - id: b
            type: llm
            async_stream: false
            async_handler: [Pipeline.AsyncStreaming.ConsoleHandler, Pipeline.Streaming.SimpleHandler]
            prompt: hi
        """
    )
    with pytest.warns(SluicewayDeprecationWarning) as record:
        spec = loads(text)
    messages = [str(w.message) for w in record]
    assert messages == [
        "<string>:6:7: steps[0].claude_options.async_streaming is deprecated; use steps[0].stream (`sluiceway migrate` rewrites it)",
        "<string>:7:7: steps[0].claude_options.stream_handler is deprecated; use steps[0].stream_handler (`sluiceway migrate` rewrites it)",
        "<string>:8:7: steps[0].claude_options.stream_buffer_size is deprecated; use steps[0].stream_buffer_size (`sluiceway migrate` rewrites it)",
        "<string>:9:7: steps[0].claude_options.stream_handler_opts is deprecated; use steps[0].stream_handler_opts (`sluiceway migrate` rewrites it)",
        "<string>:7:7: steps[0].stream_handler: handler name 'Pipeline.Streaming.Handlers.FileHandler' is deprecated; use 'file' (`sluiceway migrate` rewrites it)",
        "<string>:14:5: steps[1].async_stream is deprecated; use steps[1].stream (`sluiceway migrate` rewrites it)",
        "<string>:15:5: steps[1].async_handler is deprecated; use steps[1].stream_handler (`sluiceway migrate` rewrites it)",
        "<string>:15:21: steps[1].stream_handler[0]: handler name 'Pipeline.AsyncStreaming.ConsoleHandler' is deprecated; use 'console' (`sluiceway migrate` rewrites it)",
        "<string>:15:61: steps[1].stream_handler[1]: handler name 'Pipeline.Streaming.SimpleHandler' is deprecated; use 'simple' (`sluiceway migrate` rewrites it)",
    ]
    assert all("\n" not in m for m in messages)
    a, b = spec.steps
    assert (a.stream, a.stream_handler, a.stream_buffer_size, a.stream_handler_opts) == (
        True,
        "file",
        7,
        {"append": True},
    )
    assert a.claude_options == ClaudeOptions(max_turns=2)
    assert (b.name, b.stream, b.stream_handler) == ("b", False, ("console", "simple"))


def test_equal_old_and_new_forms_are_not_a_conflict() -> None:
    text = "name: x\nsteps:\n  - {name: a, type: claude, prompt: hi, stream: true, async_stream: true, stream_handler: console, async_handler: Pipeline.AsyncStreaming.ConsoleHandler}\n"
    with pytest.warns(SluicewayDeprecationWarning):
        spec = loads(text)
    assert (spec.steps[0].stream, spec.steps[0].stream_handler) == (True, "console")


def test_canonical_spec_loads_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loads(
            "name: x\nsteps:\n  - {name: a, type: claude, prompt: hi, stream: true, stream_handler: simple}\n"
        )


def test_spec_error_is_value_error_with_first_issue_attrs() -> None:
    with pytest.raises(ValueError) as info:
        loads("name: x\nsteps: []\n", source="mine.yaml")
    err = info.value
    assert isinstance(err, SpecError)
    assert (err.file, err.line, err.path) == ("mine.yaml", 2, "steps")


# --------------------------------------------------------------------------- templates


def test_template_roots() -> None:
    assert TEMPLATE_ROOTS == {"execution_id", "step", "timestamp", "steps", "vars", "item", "index"}


def test_find_refs_in_order() -> None:
    assert find_refs("{{steps.draft.text}} and {{ vars.x }} {{execution_id}}") == [
        ("steps", "draft", "text"),
        ("vars", "x"),
        ("execution_id",),
    ]
    assert find_refs("no templates { here }") == []


def test_render_dotted_lookup() -> None:
    values = {
        "execution_id": "run-1",
        "step": "draft",
        "timestamp": "2026-01-01T00:00:00Z",
        "vars": {"topic": "trio", "n": 3, "flag": True},
        "steps": {"draft": {"text": "T", "output": {"a": [10, 20]}}},
        "item": {"name": "x"},
        "index": 0,
    }
    assert (
        render(
            "{{execution_id}}/{{step}} {{vars.topic}} {{vars.n}} {{vars.flag}} {{steps.draft.text}} {{steps.draft.output.a.1}} {{item.name}}#{{index}}",
            values,
        )
        == "run-1/draft trio 3 true T 20 x#0"
    )


def test_render_structured_values_as_json() -> None:
    values = {"steps": {"x": {"output": {"a": [1, "é"]}}}, "vars": {"l": [True, None]}}
    assert render("{{steps.x.output}} {{vars.l}}", values) == '{"a": [1, "é"]} [true, null]'


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{nope}}", "unknown template root 'nope'"),
        ("{{vars.missing}}", "vars has no key 'missing'"),
        ("{{steps.later.text}}", "steps has no key 'later'"),
        ("{{steps.draft.text.deeper}}", "steps.draft.text is a str, not a mapping"),
    ],
)
def test_render_unknown_is_an_error_never_empty(template: str, fragment: str) -> None:
    values = {"vars": {}, "steps": {"draft": {"text": "T"}}}
    with pytest.raises(TemplateError) as info:
        render(template, values)
    assert isinstance(info.value, KeyError)
    assert fragment in str(info.value)


def test_template_checks_at_load_time() -> None:
    spec = loads(
        "name: x\nvariables: {anything: 1}\n"
        "steps:\n  - {name: a, type: claude, prompt: '{{execution_id}} {{step}} {{timestamp}} {{vars.anything}}'}\n"
        "  - {name: b, type: claude, prompt: '{{steps.a.text}}', output_to_file: 'out/{{execution_id}}.md'}\n"
    )
    assert spec.steps[1].prompt == "{{steps.a.text}}"
    with pytest.raises(SpecError) as info:
        loads("name: x\nsteps:\n  - {name: a, type: claude, prompt: '{{steps.a.text}}'}\n")
    assert "refers to step 'a', which runs at or after this one" in str(info.value)
