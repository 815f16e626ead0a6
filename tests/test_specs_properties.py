"""Properties of specs: YAML round trip, the generated JSON Schema, and migrate."""

from __future__ import annotations

import warnings
from typing import Any

import jsonschema
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sluiceway.specs import (
    BatchConfig,
    BatchTask,
    ClaudeBatchStep,
    ClaudeExtractStep,
    ClaudeOptions,
    ClaudeRobustStep,
    ClaudeSessionStep,
    ClaudeSmartStep,
    ClaudeStep,
    Defaults,
    ExtractionConfig,
    FilePart,
    LlmStep,
    MockSpec,
    MockToolCall,
    MockTurn,
    ParallelClaudeStep,
    ParallelTask,
    Pipeline,
    PreviousResponsePart,
    PythonStep,
    RetryConfig,
    SessionConfig,
    SluicewayDeprecationWarning,
    StaticPart,
    json_schema,
    loads,
    migrate,
)
from sluiceway.specs._dump import to_data

from sluiceway import SpecError

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HANDLERS = ("simple", "console", "debug", "file", "buffer", "callback")

names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
# Any text a user could write, except template braces (templates are checked separately).
texts = st.text(
    alphabet=st.characters(
        exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters="{}\ufeff"
    ),
    max_size=24,
)
small_ints = st.integers(min_value=1, max_value=10**6)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | texts
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)
opt = st.none

claude_options = st.builds(
    ClaudeOptions,
    max_turns=opt() | small_ints,
    allowed_tools=opt()
    | st.lists(st.sampled_from(["Read", "Write", "Bash"]), max_size=3).map(tuple),
    system_prompt=opt() | texts,
    model=opt() | st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5"]),
    max_tokens=opt() | small_ints,
    temperature=opt() | st.floats(0, 1, width=32),
    timeout_ms=opt() | small_ints,
    sandbox=opt() | st.sampled_from(["bubblewrap", "none"]),
    sandbox_network=opt() | st.booleans(),
)
tool_calls = st.lists(
    st.builds(
        MockToolCall,
        name=st.sampled_from(["Read", "Write"]),
        input=st.dictionaries(names, json_values, max_size=2),
    ),
    max_size=2,
).map(tuple)
mocks = opt() | st.builds(
    MockSpec,
    response=opt() | texts,
    turns=st.lists(st.builds(MockTurn, text=texts, tool_calls=tool_calls), max_size=2).map(tuple),
    pattern=st.sampled_from(["fast", "slow", "chunked", "realistic"]),
    delay_ms=opt() | st.floats(0, 1000, width=32),
    error=opt() | st.sampled_from(["overloaded", "rate_limit", "connection_lost"]),
    error_after=opt() | st.integers(0, 5),
)
handler_refs = (
    opt()
    | st.sampled_from(HANDLERS)
    | st.lists(st.sampled_from(HANDLERS), min_size=1, max_size=3).map(tuple)
    | st.just("my_pkg.handlers.Custom")
)


def prompts(
    earlier: list[str], batch: bool = False, required: bool = False
) -> st.SearchStrategy[Any]:
    parts = st.builds(StaticPart, content=texts) | st.builds(
        FilePart, path=names.map(lambda n: f"prompts/{n}.md")
    )
    if earlier:
        parts |= st.builds(
            PreviousResponsePart, step=st.sampled_from(earlier), extract=opt() | st.just("$.a")
        )
        text = texts | st.sampled_from(earlier).map(lambda n: f"Use {{{{steps.{n}.text}}}} now")
    else:
        text = texts | st.just("At {{timestamp}} in {{execution_id}}, {{vars.x}}")
    if batch:
        text |= st.just("Item {{index}}: {{item}}")
    some = text.filter(bool) | st.lists(parts, min_size=1, max_size=3).map(tuple)
    return some if required else opt() | some


NEEDS_PROMPT = {
    "claude",
    "claude_smart",
    "claude_session",
    "claude_extract",
    "claude_robust",
    "llm",
}


@st.composite
def steps_for(draw: st.DrawFn, name: str, earlier: list[str]) -> Any:
    kind = draw(
        st.sampled_from(
            [
                "claude",
                "claude_smart",
                "claude_session",
                "claude_extract",
                "claude_batch",
                "claude_robust",
                "parallel_claude",
                "llm",
                "python",
            ]
        )
    )
    common = {
        "name": name,
        "prompt": draw(
            prompts(earlier, batch=kind == "claude_batch", required=kind in NEEDS_PROMPT)
        ),
        "claude_options": draw(claude_options),
        "stream": draw(st.booleans()),
        "stream_handler": draw(handler_refs),
        "stream_handler_opts": draw(st.dictionaries(names, json_values, max_size=2)),
        "stream_buffer_size": draw(opt() | small_ints),
        "on_handler_error": draw(opt() | st.sampled_from(["isolate", "fail"])),
        "mock": draw(mocks),
        "output_to_file": draw(opt() | st.just("out/{{step}}.md")),
    }
    if kind == "claude":
        return ClaudeStep(**common)
    if kind == "claude_smart":
        return ClaudeSmartStep(
            **common,
            preset=draw(st.sampled_from(["development", "production", "analysis", "chat"])),
        )
    if kind == "claude_session":
        return ClaudeSessionStep(
            **common,
            session_config=draw(
                st.builds(
                    SessionConfig,
                    session_name=names,
                    persist=st.booleans(),
                    max_history=opt() | small_ints,
                )
            ),
        )
    if kind == "claude_extract":
        return ClaudeExtractStep(
            **common,
            extraction_config=draw(
                st.builds(
                    ExtractionConfig,
                    format=st.sampled_from(["json", "text"]),
                    schema=opt() | st.just({"type": "object"}),
                )
            ),
        )
    if kind == "claude_batch":
        return ClaudeBatchStep(
            **common,
            batch_config=draw(st.builds(BatchConfig, max_parallel=st.integers(1, 8))),
            tasks=draw(
                st.lists(
                    st.builds(BatchTask, prompt=texts, name=opt() | names), min_size=1, max_size=2
                ).map(tuple)
            ),
            items=draw(st.lists(json_values, max_size=3).map(tuple)),
        )
    if kind == "claude_robust":
        return ClaudeRobustStep(
            **common,
            retry_config=draw(
                st.builds(
                    RetryConfig,
                    max_retries=st.integers(0, 5),
                    backoff=st.sampled_from(["exponential", "fixed"]),
                )
            ),
        )
    if kind == "parallel_claude":
        ids = draw(st.lists(names, min_size=1, max_size=3, unique=True))
        return ParallelClaudeStep(
            **common,
            parallel_tasks=tuple(ParallelTask(id=i, prompt=draw(texts)) for i in ids),
            fail_fast=draw(st.booleans()),
        )
    if kind == "llm":
        return LlmStep(
            **common, provider=draw(st.sampled_from(["claude", "mock", "my_pkg.providers.Custom"]))
        )
    return PythonStep(
        **common,
        callable="my_pkg.steps:run",
        input_stream=draw(opt() | st.sampled_from(earlier)) if earlier else None,
        args=draw(st.dictionaries(names, json_values, max_size=2)),
    )


@st.composite
def pipelines(draw: st.DrawFn) -> Pipeline:
    step_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    steps = tuple(draw(steps_for(n, step_names[:i])) for i, n in enumerate(step_names))
    return Pipeline(
        name=draw(names),
        description=draw(opt() | texts),
        steps=steps,
        defaults=draw(
            st.builds(
                Defaults,
                claude_options=claude_options,
                stream_handler=handler_refs,
                stream_buffer_size=opt() | small_ints,
            )
        ),
        environment=draw(st.dictionaries(names, json_values, max_size=2)),
        # `x` is declared: the prompts' {{vars.x}} must name a declared variable
        variables={"x": "y", **draw(st.dictionaries(names, json_values, max_size=2))},
        workspace_dir=draw(opt() | st.just("ws")),
        output_dir=draw(opt() | st.just("outputs")),
    )


@SETTINGS
@given(pipelines())
def test_yaml_round_trip(spec: Pipeline) -> None:
    text = spec.to_yaml()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loads(text) == spec


VALIDATOR = jsonschema.Draft202012Validator(json_schema())


def test_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


@SETTINGS
@given(pipelines())
def test_schema_accepts_generated_specs(spec: Pipeline) -> None:
    data = yaml.safe_load(spec.to_yaml())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(data)]
    assert errors == []
    assert VALIDATOR.is_valid({"workflow": data})


LEGACY_NAMES = {
    "simple": "Pipeline.Streaming.SimpleHandler",
    "console": "Pipeline.AsyncStreaming.ConsoleHandler",
    "file": "Pipeline.Streaming.Handlers.FileHandler",
    "buffer": "Pipeline.Streaming.Handlers.BufferHandler",
    "debug": "Pipeline.Streaming.DebugHandler",
    "callback": "Pipeline.AsyncStreaming.CallbackHandler",
}


@st.composite
def legacy_files(draw: st.DrawFn) -> str:
    spec = draw(pipelines())
    data = to_data(spec)
    for step in data["steps"]:
        options = step.get("claude_options", {})
        if "stream_handler" in step and draw(st.booleans()):
            ref = step["stream_handler"]
            if isinstance(ref, str) and ref in LEGACY_NAMES and draw(st.booleans()):
                ref = LEGACY_NAMES[ref]
            del step["stream_handler"]
            if draw(st.booleans()):
                options["stream_handler"] = ref
            else:
                step["async_handler"] = ref
        where = draw(st.sampled_from(["keep", "options", "async_stream"]))
        stream = step.pop("stream", True)
        if where == "options":
            options["async_streaming"] = stream
        elif where == "async_stream":
            step["async_stream"] = stream
        elif stream is False:
            step["stream"] = False
        for key in ("stream_buffer_size", "stream_handler_opts"):
            if key in step and draw(st.booleans()):
                options[key] = step.pop(key)
        if options:
            step["claude_options"] = options
        if draw(st.booleans()):
            step["id"] = step.pop("name")
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if draw(st.booleans()):
        body = "workflow:\n" + "".join(f"  {line}\n" for line in body.splitlines())
    return "# a user's comment\n" + body


@SETTINGS
@given(legacy_files())
def test_migrate_preserves_meaning(text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SluicewayDeprecationWarning)
        before = loads(text)
    migrated = migrate(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loads(migrated) == before
    assert migrated.startswith("# a user's comment\n")
    assert migrate(migrated) == migrated


@st.composite
def mangled_files(draw: st.DrawFn) -> str:
    lines = draw(pipelines()).to_yaml().splitlines()
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "indent", "dedent", "junk", "retype"]))
        line = lines[index]
        if action == "drop":
            del lines[index]
        elif action == "dup":
            lines.insert(index, line)
        elif action == "indent":
            lines[index] = "  " + line
        elif action == "dedent":
            lines[index] = line[2:]
        elif action == "junk":
            lines[index] = line + draw(
                st.sampled_from([": x", " [", " {a: 1}", " -5", "\t", " *a", " &a"])
            )
        else:
            lines[index] = (
                line.split(":")[0]
                + ": "
                + draw(st.sampled_from(["-1", "[]", "{}", "null", "true", "'x'", "[1, 2]"]))
            )
        if not lines:
            break
    return "\n".join(lines) + "\n"


@SETTINGS
@given(mangled_files())
def test_mangled_files_load_or_give_located_issues(text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter(
            "ignore", SluicewayDeprecationWarning
        )  # mangling can make legacy forms
        try:
            loads(text, source="m.yaml")
        except SpecError as exc:
            assert exc.issues
            for issue in exc.issues:
                assert issue.file == "m.yaml"
                assert issue.line is not None and 1 <= issue.line <= text.count("\n") + 1, str(
                    issue
                )
                assert issue.message and "\n" not in issue.message
                assert "invalid spec:" not in issue.message, str(
                    issue
                )  # _check missed what cattrs caught
