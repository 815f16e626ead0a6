"""Every seed snippet validates; legacy forms warn; ``migrate`` output is canonical and equal."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from sluiceway.specs import SluicewayDeprecationWarning, migrate, migrate_file

import sluiceway

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "tests" / "data" / "seeds").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

#: Deprecation warnings each seed file gives (0: canonical already).
EXPECTED_WARNINGS = {
    "s000_guide_claude_options": 3,
    "s001_after": 2,
    "s001_before": 0,
    "s001_handler_buffer": 3,
    "s001_handler_callback": 3,
    "s001_handler_console": 2,
    "s001_handler_debug": 2,
    "s001_handler_file": 3,
    "s001_handler_simple": 3,
    "s001_pattern1_development": 3,
    "s001_pattern2_production": 3,
    "s001_pattern3_enhanced": 4,
    "s002_after": 1,
    "s002_before": 3,
    "s003_configuration": 3,
    "s003_example": 3,
    "s003_handler_buffer": 2,
    "s003_handler_callback": 2,
    "s003_handler_console": 2,
    "s003_handler_file": 2,
    "s004_yaml_configuration": 1,
}


def _load_counting(path: Path) -> tuple[sluiceway.specs.Pipeline, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = sluiceway.load(path)
    assert all(issubclass(w.category, SluicewayDeprecationWarning) for w in caught)
    return spec, [str(w.message) for w in caught]


def test_every_seed_file_is_listed() -> None:
    assert sorted(p.stem for p in SEEDS) == sorted(EXPECTED_WARNINGS)


@pytest.mark.parametrize("path", SEEDS, ids=[p.stem for p in SEEDS])
def test_seed_validates_warns_and_migrates(path: Path, tmp_path: Path) -> None:
    spec, messages = _load_counting(path)
    assert len(messages) == EXPECTED_WARNINGS[path.stem], messages
    for message in messages:
        assert message.startswith(f"{path}:")
        assert "is deprecated; use " in message and "\n" not in message
    migrated = tmp_path / path.name
    migrated.write_text(migrate_file(path), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the migrated file gives no warning at all
        again = sluiceway.load(migrated)
    assert again == spec
    # comments survive the rewrite
    original_comments = [
        line.strip() for line in path.read_text().splitlines() if line.strip().startswith("#")
    ]
    migrated_text = migrated.read_text()
    for comment in original_comments:
        assert comment in migrated_text
    for old in ("async_streaming", "async_stream", "async_handler", "Pipeline."):
        assert old not in migrated_text.replace("# ", "")


def test_seed_streaming_options_are_kept() -> None:
    spec, _ = _load_counting(ROOT / "tests/data/seeds/s000_guide_claude_options.yaml")
    step = spec.steps[0]
    assert (step.stream, step.stream_handler, step.stream_buffer_size) == (True, "console", 100)
    spec, _ = _load_counting(ROOT / "tests/data/seeds/s001_pattern2_production.yaml")
    step = spec.steps[0]
    assert step.stream_handler_opts == {"file_path": "./logs/claude_{{execution_id}}.log"}
    spec, _ = _load_counting(ROOT / "tests/data/seeds/s002_before.yaml")
    assert (spec.steps[0].name, spec.steps[0].stream_handler) == ("draft_report", "console")


def test_migrate_keeps_inline_comments_next_to_the_moved_key() -> None:
    text = "name: x  # top\nsteps:\n  - name: a\n    type: claude\n    prompt: hi\n    claude_options:\n      max_turns: 2\n      async_streaming: true  # turn it on\n"
    with pytest.warns(SluicewayDeprecationWarning):
        before = sluiceway.specs.loads(text)
    out = migrate(text)
    assert re.search(r"^    stream: true +# turn it on$", out, re.M), out
    assert "name: x  # top" in out
    assert sluiceway.specs.loads(out) == before


def test_migrate_write_keeps_backup(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    original = (
        "name: p\nsteps:\n  - id: a\n    type: claude\n    prompt: hi\n    async_stream: true\n"
    )
    path.write_text(original)
    new = migrate_file(path, write=True)
    assert (tmp_path / "p.yaml.bak").read_text() == original
    assert path.read_text() == new
    assert "stream: true" in new and "name: a" in new


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_validate(path: Path) -> None:
    spec, messages = _load_counting(path)
    assert bool(messages) == path.stem.startswith("legacy_")
    for step in spec.steps:
        assert step.stream


def test_examples_cover_each_generation() -> None:
    assert {p.stem for p in EXAMPLES} >= {
        "hello",
        "legacy_claude_options",
        "legacy_async_stream",
        "current_stream",
    }
    hello, _ = _load_counting(ROOT / "examples/hello.yaml")
    (step,) = hello.steps
    assert (step.type, step.stream, step.stream_handler, step.mock.pattern) == (
        "claude",
        True,
        "simple",
        "slow",
    )
    assert 30 <= len(step.mock.response.split()) <= 60


def test_migrate_keeps_key_order_and_the_comment_of_an_emptied_claude_options() -> None:
    text = (
        "name: x\nsteps:\n  - id: b   # the b step\n    type: claude\n    prompt: hi\n    claude_options:   # opts\n"
        "      stream_handler_opts:\n        file_path: x.log\n"
        "      stream_handler: Pipeline.Streaming.Handlers.FileHandler\n    # trailing comment\n"
        "  - name: c\n    type: claude\n    prompt: hi\n"
    )
    with pytest.warns(SluicewayDeprecationWarning):
        before = sluiceway.specs.loads(text)
    out = migrate(text)
    assert out == (
        "name: x\nsteps:\n  - name: b # the b step\n    type: claude\n    prompt: hi\n    stream_handler_opts: # opts\n"
        "      file_path: x.log\n    stream_handler: file\n    # trailing comment\n"
        "  - name: c\n    type: claude\n    prompt: hi\n"
    )
    assert sluiceway.specs.loads(out) == before


@pytest.mark.parametrize(
    ("stem", "kind"),
    [
        ("s001_pattern1_development", "claude_smart"),
        ("s001_pattern2_production", "claude"),
        ("s002_before", "llm"),
        ("s002_after", "llm"),
    ],
)
def test_the_guides_snippet_without_our_prompt_fails_at_load_with_one_located_issue(
    stem: str, kind: str
) -> None:
    # The seed guides show these steps without a prompt; the seed files add one line. As written
    # in the guide, the only problem is the missing prompt, reported at the step.
    lines = (ROOT / "tests/data/seeds" / f"{stem}.yaml").read_text().splitlines(keepends=True)
    (added,) = [i for i, line in enumerate(lines) if line.lstrip().startswith("prompt:")]
    as_written = "".join(lines[:added] + lines[added + 1 :])
    step_line = next(
        n for n, line in enumerate(lines, 1) if line.lstrip().startswith(("- name:", "- id:"))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SluicewayDeprecationWarning)
        with pytest.raises(sluiceway.SpecError) as info:
            sluiceway.loads(as_written)
    (issue,) = info.value.issues
    assert (issue.line, issue.path) == (step_line, "steps[0].prompt")
    assert f"{kind} step needs a prompt" in issue.message
