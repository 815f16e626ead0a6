"""Table-driven bad inputs: each gives its own message with file, line and field path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sluiceway.specs import SluicewayDeprecationWarning

import sluiceway
from sluiceway import SpecError

OK_STEP = """\
  - name: a
    type: claude
    prompt: hi
"""

# (id, file text, [(line, column or None, field path, message fragment), ...])
CASES: list[tuple[str, str | bytes, list[tuple[int | None, int | None, str, str]]]] = [
    (
        "yaml_syntax_unclosed_quote",
        'name: x\nsteps:\n  - name: "a\n    type: claude\n',
        [(5, 1, "", "YAML syntax error")],
    ),
    (
        "yaml_syntax_bad_indent",
        "name: x\nsteps:\n  - name: a\n   type: claude\n",
        [(4, 4, "", "YAML syntax error")],
    ),
    (
        "yaml_tab_indentation",
        "name: x\nsteps:\n\t- name: a\n",
        [(3, 1, "", "YAML syntax error")],
    ),
    ("empty_file", "", [(1, 1, "", "file is empty")]),
    ("only_comments", "# nothing here\n\n", [(1, 1, "", "file is empty")]),
    ("not_utf8", b"name: x\nsteps:\n  - name: caf\xe9\n", [(3, 14, "", "not UTF-8")]),
    (
        "top_level_list",
        "- a\n- b\n",
        [(1, 1, "", "expected a mapping with `steps` (and optionally `name`), got a list")],
    ),
    (
        "nested_too_deep",
        "name: x\nsteps:\n" + OK_STEP + "    mock: " + "[" * 500 + "]" * 500 + "\n",
        [(6, 72, "", "nested more than 64 levels deep")],
    ),
    (
        "nul_byte",
        "name: x\nsteps:\n  - name: a\x00\n",
        [(3, 12, "", "character U+0000 is not allowed in YAML")],
    ),
    (
        "integer_of_5000_digits",
        "name: x\nvariables: {n: " + "9" * 5000 + "}\nsteps:\n" + OK_STEP,
        [(2, 16, "variables.n", "a number of 5000 digits is too long; quote it if it is text")],
    ),
    (
        "step_name_too_long",
        "name: x\nsteps:\n  - name: " + "a" * 300 + "\n    type: claude\n    prompt: hi\n",
        [(3, 11, "steps[0].name", "a name is at most 100 characters, got 300")],
    ),
    (
        "step_name_empty",
        'name: x\nsteps:\n  - name: ""\n    type: claude\n    prompt: hi\n',
        [(3, 11, "steps[0].name", "expected a name, got an empty string")],
    ),
    (
        "step_name_with_newline",
        'name: x\nsteps:\n  - name: "a\\nb"\n    type: claude\n    prompt: hi\n',
        [(3, 11, "steps[0].name", "a name cannot contain a newline")],
    ),
    (
        "pipeline_name_empty",
        'name: " "\nsteps:\n' + OK_STEP,
        [(1, 7, "name", "expected a name, got an empty string")],
    ),
    (
        "parallel_task_id_with_newline",
        'name: x\nsteps:\n  - name: p\n    type: parallel_claude\n    parallel_tasks:\n'
        '      - {id: "t\\n1", prompt: hi}\n',
        [(6, 14, "steps[0].parallel_tasks[0].id", "a name cannot contain a newline")],
    ),
    (
        "temperature_above_one",
        "name: x\nsteps:\n" + OK_STEP + "    claude_options: {temperature: 7}\n",
        [(6, 35, "steps[0].claude_options.temperature", "expected a number from 0 to 1, got 7")],
    ),
    (
        "temperature_negative",
        "name: x\nsteps:\n" + OK_STEP + "    claude_options: {temperature: -1}\n",
        [(6, 35, "steps[0].claude_options.temperature", "expected a number from 0 to 1, got -1")],
    ),
    (
        "temperature_nan",
        "name: x\nsteps:\n" + OK_STEP + "    claude_options: {temperature: .nan}\n",
        [(6, 35, "steps[0].claude_options.temperature", "expected a finite number, got nan")],
    ),
    (
        "unknown_variable",
        'name: x\nvariables: {topic: a}\nsteps:\n  - name: a\n    type: claude\n    prompt: "{{vars.topc}}"\n',
        [(6, 13, "steps[0].prompt", "{{vars.topc}} refers to unknown variable 'topc'; did you mean `topic`?")],
    ),
    (
        "unknown_tool",
        "name: x\nsteps:\n" + OK_STEP + "    claude_options: {allowed_tools: [Read, Grepp]}\n",
        [(6, 44, "steps[0].claude_options.allowed_tools[1]", "unknown tool 'Grepp'; expected one of Read")],
    ),
    (
        "unknown_disallowed_tool_in_defaults",
        "name: x\ndefaults:\n  claude_options: {disallowed_tools: [bash]}\nsteps:\n" + OK_STEP,
        [(3, 39, "defaults.claude_options.disallowed_tools[0]", "did you mean `Bash`?")],
    ),
    ("missing_steps", "name: x\n", [(1, 1, "", "missing required key `steps`")]),
    (
        "parallel_task_id_and_name",
        "name: x\nsteps:\n  - name: p\n    type: parallel_claude\n    parallel_tasks:\n"
        "      - {id: a, name: b, prompt: hi}\n",
        [(6, 17, "steps[0].parallel_tasks[0].name", "`name` is an alias of `id`; set only one of them")],
    ),
    (
        "empty_steps",
        "name: x\nsteps: []\n",
        [(2, 8, "steps", "expected at least one step, got an empty list")],
    ),
    ("steps_not_a_list", "name: x\nsteps: hello\n", [(2, 8, "steps", "expected a list of ")]),
    (
        "unknown_top_level_key",
        "name: x\nstepz: []\nsteps:\n" + OK_STEP,
        [(2, 1, "stepz", "unknown key; did you mean `steps`?")],
    ),
    (
        "unknown_step_key_near_miss",
        "name: x\nsteps:\n" + OK_STEP + "    stream_handlr: simple\n",
        [(6, 5, "steps[0].stream_handlr", "unknown key; did you mean `stream_handler`?")],
    ),
    (
        "unknown_step_type",
        "name: x\nsteps:\n  - name: a\n    type: claud\n",
        [(4, 11, "steps[0].type", "unknown step type 'claud'; expected one of claude, ")],
    ),
    (
        "missing_step_type",
        "name: x\nsteps:\n  - name: a\n    prompt: hi\n",
        [(3, 5, "steps[0]", "missing required key `type`")],
    ),
    (
        "wrong_type_max_turns",
        "name: x\nsteps:\n" + OK_STEP + "    claude_options:\n      max_turns: ten\n",
        [(7, 18, "steps[0].claude_options.max_turns", "expected an integer, got the string 'ten'")],
    ),
    (
        "wrong_type_stream_bool",
        "name: x\nsteps:\n" + OK_STEP + "    stream: 3\n",
        [(6, 13, "steps[0].stream", "expected true or false, got 3")],
    ),
    (
        "wrong_type_prompt_number",
        "name: x\nsteps:\n  - name: a\n    type: claude\n    prompt: 42\n",
        [(5, 13, "steps[0].prompt", "expected a string or a list of ")],
    ),
    (
        "buffer_size_negative",
        "name: x\nsteps:\n" + OK_STEP + "    stream_buffer_size: -5\n",
        [(6, 25, "steps[0].stream_buffer_size", "expected a positive integer, got -5")],
    ),
    (
        "buffer_size_zero_in_defaults",
        "name: x\ndefaults:\n  stream_buffer_size: 0\nsteps:\n" + OK_STEP,
        [(3, 23, "defaults.stream_buffer_size", "expected a positive integer, got 0")],
    ),
    (
        "unknown_handler_name",
        "name: x\nsteps:\n" + OK_STEP + "    stream_handler: consol\n",
        [
            (
                6,
                21,
                "steps[0].stream_handler",
                "unknown stream handler 'consol'; expected one of simple, console, debug, file, buffer, callback or a dotted path to a Handler class; did you mean `console`?",
            )
        ],
    ),
    (
        "unknown_handler_in_list",
        "name: x\nsteps:\n" + OK_STEP + "    stream_handler: [simple, bufer]\n",
        [(6, 30, "steps[0].stream_handler[1]", "did you mean `buffer`?")],
    ),
    (
        "unknown_handler_option",
        "name: x\nsteps:\n"
        + OK_STEP
        + "    stream_handler: buffer\n    stream_handler_opts:\n      max_sise: 10\n",
        [
            (
                8,
                7,
                "steps[0].stream_handler_opts.max_sise",
                "unknown option for handler 'buffer'; did you mean `max_size`?",
            )
        ],
    ),
    (
        "duplicate_step_names",
        "name: x\nsteps:\n" + OK_STEP + OK_STEP,
        [(6, 11, "steps[1].name", "duplicate step name 'a' (first used by steps[0] at line 3)")],
    ),
    (
        "duplicate_yaml_key",
        "name: x\nname: y\nsteps:\n" + OK_STEP,
        [(2, 1, "name", "duplicate key 'name' (first at line 1)")],
    ),
    (
        "previous_response_unknown_step",
        "name: x\nsteps:\n"
        + OK_STEP
        + "  - name: b\n    type: claude\n    prompt:\n      - type: previous_response\n        step: zz\n",
        [(10, 15, "steps[1].prompt[0].step", "previous_response refers to unknown step 'zz'")],
    ),
    (
        "previous_response_later_step",
        "name: x\nsteps:\n  - name: b\n    type: claude\n    prompt:\n      - type: previous_response\n        step: a\n"
        + OK_STEP,
        [(7, 15, "steps[0].prompt[0].step", "refers to step 'a', which runs at or after this one")],
    ),
    (
        "template_unknown_root",
        "name: x\nsteps:\n  - name: a\n    type: claude\n    prompt: 'Hi {{user.name}}'\n",
        [(5, 13, "steps[0].prompt", "unknown template root 'user' in {{user.name}}")],
    ),
    (
        "template_later_step",
        "name: x\nsteps:\n  - name: a\n    type: claude\n    prompt: 'Use {{steps.b.text}}'\n  - name: b\n    type: claude\n    prompt: hi\n",
        [(5, 13, "steps[0].prompt", "refers to step 'b', which runs at or after this one")],
    ),
    (
        "template_item_outside_batch",
        "name: x\nsteps:\n  - name: a\n    type: claude\n    prompt: 'Do {{item}}'\n",
        [
            (
                5,
                13,
                "steps[0].prompt",
                "unknown template root 'item' in {{item}} (only inside claude_batch prompts)",
            )
        ],
    ),
    (
        "missing_prompt_file",
        "name: x\nsteps:\n  - name: a\n    type: claude\n    prompt:\n      - type: file\n        path: prompts/missing.md\n",
        [(7, 15, "steps[0].prompt[0].path", "prompt file 'prompts/missing.md' not found")],
    ),
    (
        "unknown_prompt_part_type",
        "name: x\nsteps:\n  - name: a\n    type: claude\n    prompt:\n      - type: statik\n        content: hi\n",
        [
            (
                6,
                15,
                "steps[0].prompt[0].type",
                "unknown prompt part type 'statik'; expected one of static, file, previous_response; did you mean `static`?",
            )
        ],
    ),
    (
        "literal_choice",
        "name: x\nsteps:\n" + OK_STEP + "    mock:\n      pattern: slo\n",
        [
            (
                7,
                16,
                "steps[0].mock.pattern",
                "expected one of 'fast', 'slow', 'chunked', 'realistic', got the string 'slo'; did you mean `slow`?",
            )
        ],
    ),
    (
        "legacy_conflict",
        "name: x\nsteps:\n" + OK_STEP + "    stream: false\n    async_stream: true\n",
        [
            (
                7,
                5,
                "steps[0].async_stream",
                "conflicts with steps[0].stream: true vs false; keep only `stream`",
            )
        ],
    ),
    (
        "legacy_lift_conflict",
        "name: x\nsteps:\n"
        + OK_STEP
        + "    stream_handler: simple\n    claude_options:\n      stream_handler: file\n",
        [
            (
                8,
                7,
                "steps[0].claude_options.stream_handler",
                "conflicts with steps[0].stream_handler: 'file' vs 'simple'",
            )
        ],
    ),
    (
        "id_and_name",
        "name: x\nsteps:\n  - name: a\n    id: b\n    type: claude\n    prompt: hi\n",
        [(4, 5, "steps[0].id", "`id` is an alias of `name`; set only one of them")],
    ),
    (
        "workflow_wrapper_extra_key",
        "workflow:\n  name: x\n  steps: []\nsteps: []\n",
        [(4, 1, "steps", "unknown key next to `workflow:`")],
    ),
    (
        "error_inside_workflow_wrapper",
        "workflow:\n  name: x\n  steps:\n    - name: a\n      type: claude\n      stream_buffer_size: 0\n      prompt: hi\n",
        [(6, 27, "steps[0].stream_buffer_size", "expected a positive integer, got 0")],
    ),
    (
        "python_step_missing_callable",
        "name: x\nsteps:\n  - name: p\n    type: python\n",
        [(3, 5, "steps[0]", "missing required key `callable`")],
    ),
    (
        "defaults_async_streaming",
        "name: x\ndefaults:\n  claude_options:\n    async_streaming: true\nsteps:\n" + OK_STEP,
        [(4, 5, "defaults.claude_options.async_streaming", "streaming is switched per step")],
    ),
    (
        "malformed_condition",
        "name: x\nsteps:\n" + OK_STEP + "    condition: 'vars.x and ('\n",
        [(6, 16, "steps[0].condition", "condition 'vars.x and (': ")],
    ),
    (
        "input_stream_later_step",
        "name: x\nsteps:\n  - {name: p, type: python, callable: 'json:dumps', input_stream: a}\n"
        + OK_STEP,
        [
            (
                3,
                67,
                "steps[0].input_stream",
                "input_stream must name an earlier step, got a later step 'a'",
            )
        ],
    ),
    (
        "defaults_option_under_defaults_handler",
        "name: x\ndefaults:\n  stream_handler: file\n  stream_handler_opts: {file_path: a.log, apend: true}\nsteps:\n"
        + OK_STEP,
        [
            (
                4,
                43,
                "defaults.stream_handler_opts.apend",
                "unknown option for handler 'file'; did you mean `append`?",
            )
        ],
    ),
    (
        "llm_unknown_provider",
        "name: x\nsteps:\n  - name: a\n    type: llm\n    provider: openai\n    prompt: hi\n",
        [(5, 15, "steps[0].provider", "unknown provider 'openai'")],
    ),
    (
        "claude_without_prompt",
        "name: x\nsteps:\n  - name: a\n    type: claude\n    stream_handler: simple\n",
        [(3, 5, "steps[0].prompt", "a claude step needs a prompt (a string or a list of parts)")],
    ),
    (
        "llm_with_empty_prompt",
        "name: x\nsteps:\n  - name: a\n    type: llm\n    provider: mock\n    prompt: ''\n",
        [(6, 13, "steps[0].prompt", "an llm step needs a prompt")],
    ),
    (
        "claude_smart_with_empty_part_list",
        "name: x\nsteps:\n  - name: a\n    type: claude_smart\n    prompt: []\n",
        [(5, 13, "steps[0].prompt", "a claude_smart step needs a prompt")],
    ),
    (
        "batch_without_tasks_or_items",
        "name: x\nsteps:\n  - name: b\n    type: claude_batch\n    batch_config: {max_parallel: 2}\n",
        [(3, 5, "steps[0].tasks", "a claude_batch step needs `tasks`, or `items` with a `prompt`")],
    ),
    (
        "batch_with_empty_tasks_and_items",
        "name: x\nsteps:\n  - name: b\n    type: claude_batch\n    tasks: []\n    items: []\n",
        [(5, 12, "steps[0].tasks", "a claude_batch step needs `tasks`, or `items`")],
    ),
    (
        "batch_items_without_prompt",
        "name: x\nsteps:\n  - name: b\n    type: claude_batch\n    items: [1, 2]\n",
        [(3, 5, "steps[0].prompt", "a claude_batch step with `items` needs a prompt template")],
    ),
    (
        "parallel_without_tasks",
        "name: x\nsteps:\n  - name: p\n    type: parallel_claude\n    fail_fast: false\n",
        [
            (
                3,
                5,
                "steps[0].parallel_tasks",
                "a parallel_claude step needs at least one parallel task",
            )
        ],
    ),
    (
        "parallel_with_empty_task_list",
        "name: x\nsteps:\n  - name: p\n    type: parallel_claude\n    parallel_tasks: []\n",
        [(5, 21, "steps[0].parallel_tasks", "needs at least one parallel task")],
    ),
]


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "pipeline.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_table_has_at_least_25_distinct_cases() -> None:
    assert len(CASES) >= 25
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("case_id", "content", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(
    tmp_path: Path,
    case_id: str,
    content: str | bytes,
    expected: list[tuple[int | None, int | None, str, str]],
) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(SpecError) as info:
        if case_id.startswith("legacy"):
            with pytest.warns(SluicewayDeprecationWarning):
                sluiceway.load(path)
        else:
            sluiceway.load(path)
    issues = info.value.issues
    assert [(i.file, i.line, i.column, i.path) for i in issues] == [
        (str(path), line, column, field) for line, column, field, _ in expected
    ], "\n".join(map(str, issues))
    for issue, (_, _, _, fragment) in zip(issues, expected, strict=True):
        assert fragment in issue.message, str(issue)
        assert "\n" not in issue.message


def test_all_issues_are_reported_at_once(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        name: x
        steps:
          - name: a
            type: claud
          - name: b
            type: claude
            stream_buffer_size: -1
            stream_handler: consol
            prompt: hi
          - name: b
            type: claude
            prompt: hi
        """
    )
    with pytest.raises(SpecError) as info:
        sluiceway.load(_write(tmp_path, text))
    assert [(i.line, i.path) for i in info.value.issues] == [
        (4, "steps[0].type"),
        (7, "steps[1].stream_buffer_size"),
        (8, "steps[1].stream_handler"),
        (10, "steps[2].name"),
    ]
    assert str(info.value).count("\n") == 3


def test_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"name: x\n" + b"# padding\n" * (600 * 1024))
    with pytest.raises(SpecError) as info:
        sluiceway.load(path)
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.path) == (str(path), 1, "")
    assert "the limit is 5242880 (5 MiB)" in issue.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        sluiceway.load(tmp_path / "nope.yaml")
    assert "cannot read file" in info.value.issues[0].message


def test_defaults_options_do_not_apply_under_another_handler(tmp_path: Path) -> None:
    text = (
        "name: x\ndefaults:\n  stream_handler: file\n  stream_handler_opts: {file_path: a.log}\n"
        "steps:\n  - {name: a, type: claude, prompt: hi, stream_handler: simple}\n"
    )
    spec = sluiceway.load(_write(tmp_path, text))
    assert spec.steps[0].stream_handler == "simple"


def test_prompt_file_found_relative_to_spec_or_workspace(tmp_path: Path) -> None:
    (tmp_path / "here.md").write_text("hello")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "there.md").write_text("hello")
    text = textwrap.dedent(
        """\
        name: x
        workspace_dir: ws
        steps:
          - name: a
            type: claude
            prompt:
              - {type: file, path: here.md}
              - {type: file, path: there.md}
        """
    )
    spec = sluiceway.load(_write(tmp_path, text))
    assert [p.path for p in spec.steps[0].prompt] == ["here.md", "there.md"]


def test_recursive_alias_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nsteps: &s\n  - *s\n")
    with pytest.raises(SpecError) as info:
        sluiceway.load(path)
    (issue,) = info.value.issues
    assert (issue.line, issue.path) == (2, "steps[0]")  # the anchored node's line
    assert "refers to itself" in issue.message


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    path = _write(tmp_path, "\n".join(lines) + "\nname: x\nsteps: []\n")
    with pytest.raises(SpecError) as info:
        sluiceway.load(path)
    assert "expands to more than 200000 values through YAML aliases" in info.value.issues[0].message


def test_a_huge_spec_without_aliases_is_refused_early_and_says_why(tmp_path: Path) -> None:
    steps = "".join(f"  - name: s{i}\n    type: claude\n    prompt: hi {i}\n" for i in range(60_000))
    path = _write(tmp_path, "name: x\nsteps:\n" + steps)
    with pytest.raises(SpecError) as info:
        sluiceway.load(path)
    (issue,) = info.value.issues
    assert issue.line == 85_715  # where the 200,001st value starts
    assert issue.message == "the spec has more than 200000 values; a spec is a page, not a data set"
    assert "alias" not in issue.message


@pytest.mark.parametrize("command", ["validate", "migrate", "run"])
@pytest.mark.parametrize(
    ("content", "where", "fragment"),
    [
        ("name: x\nsteps:\n" + OK_STEP + "    mock: " + "[" * 500 + "]" * 500 + "\n", ":6:72:", "nested"),
        ("name: x\nsteps:\n  - name: a\x00\n", ":3:12:", "U+0000"),
        ("name: x\nvariables: {n: " + "9" * 5000 + "}\nsteps:\n" + OK_STEP, ":2:16:", "5000 digits"),
    ],
    ids=["deep", "nul", "bigint"],
)
def test_the_cli_reports_a_spec_error_not_a_traceback(
    tmp_path: Path, command: str, content: str, where: str, fragment: str
) -> None:
    import subprocess
    import sys

    path = _write(tmp_path, content)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "sluiceway"), command, str(path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith(str(path) + where)]
    assert fragment in line


MIGRATION_GUIDE = """\
steps:
  - id: research_summary
    type: llm
    provider: claude
    prompt: >
      Summarize the latest findings on autonomous research pipelines.
    stream: true
    stream_handler: Pipeline.Streaming.ConsoleHandler
"""


def test_a_pipeline_without_a_name_is_named_after_its_file(tmp_path: Path) -> None:
    path = tmp_path / "research.yaml"
    path.write_text(MIGRATION_GUIDE, encoding="utf-8")
    with pytest.warns(SluicewayDeprecationWarning, match="Pipeline.Streaming.ConsoleHandler"):
        spec = sluiceway.load(path)
    assert spec.name == "research"
    assert [s.name for s in spec.steps] == ["research_summary"]
    assert spec.steps[0].stream_handler == "console"
    assert sluiceway.loads("steps:\n" + OK_STEP).name == "pipeline"


def test_parallel_tasks_take_name_or_id(tmp_path: Path) -> None:
    text = (
        "name: x\nsteps:\n  - name: p\n    type: parallel_claude\n    parallel_tasks:\n"
        "      - {name: a, prompt: hi}\n      - {id: b, prompt: hi}\n"
    )
    spec = sluiceway.load(_write(tmp_path, text))
    assert [t.id for t in spec.steps[0].parallel_tasks] == ["a", "b"]
