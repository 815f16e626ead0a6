"""Every ``examples/step_*.yaml`` runs in mock mode with ``sluiceway.run_sync``, and says what it shows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sluiceway.engine import Delta

import sluiceway

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STEP_EXAMPLES = sorted(EXAMPLES.glob("step_*.yaml"))


def test_one_example_per_step_type():
    types = set()
    for path in STEP_EXAMPLES:
        types |= {step.type for step in sluiceway.load(path).steps}
    assert types == {
        "claude", "claude_smart", "claude_session", "claude_extract", "claude_batch", "claude_robust",
        "parallel_claude", "llm", "python",
    }


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of examples/: tools and sessions write next to it (../outputs), never into the repo."""
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy)
    return copy


@pytest.mark.parametrize("path", STEP_EXAMPLES, ids=lambda p: p.stem)
def test_step_example_runs_in_mock_mode(path: Path, examples: Path, tmp_path: Path, capsys):
    result = sluiceway.run_sync(examples / path.name, output_dir=tmp_path / "out")
    assert result.status == "ok", (result.failed_step, result.error)
    for name, step in result.steps.items():
        assert step.status == "ok", name
        assert step.text or step.output is not None, name
    assert json.loads((result.run_dir / "result.json").read_text())["status"] == "ok"
    printed = capsys.readouterr().out
    assert printed  # every example streams to a console handler
    check = CHECKS.get(path.stem)
    if check is not None:
        check(result, examples, printed)


def _claude(result, examples, printed):
    notes = examples.parent / "outputs" / "step_claude_workspace" / "notes.txt"
    assert notes.read_text() == "Hello, streaming world!\n"
    assert printed.count("TOOL USE:") == 3
    assert result.steps["notes"].text.endswith("notes.txt now says: Hello, streaming world!")


def _session(result, examples, printed):
    stored = examples.parent / "outputs" / "step_session_workspace" / ".sluiceway" / "sessions" / "project_chat.json"
    assert len(json.loads(stored.read_text())["messages"]) == 4


def _extract(result, examples, printed):
    assert result.steps["facts"].output == {"name": "sluiceway", "version": "0.1.0"}


def _batch(result, examples, printed):
    output = result.steps["translate"].output
    assert len(output) == 6
    for i, word in enumerate(["river", "sluice", "stream", "channel", "gate", "flow"]):
        assert word in output[i]
        assert f"[translate[{i}]]" in printed  # each line names its task


def _parallel(result, examples, printed):
    assert result.steps["review"].output[0].startswith("No secrets")
    assert "[review.security]" in printed and "[review.performance]" in printed


def _robust(result, examples, printed):
    assert "attempt 2 follows" in printed
    buffer = result.handlers["answer"][1]
    assert buffer.text() == result.steps["answer"].text
    assert all(e.attempt == 2 for e in buffer.events if isinstance(e, Delta))


def _python(result, examples, printed):
    assert result.steps["live_count"].output["characters"] == len(result.steps["draft"].text)
    assert result.steps["stats"].output["long_words"] == ["Streaming", "delivers", "words", "Readers", "start", "sooner"]


CHECKS = {
    "step_claude": _claude,
    "step_session": _session,
    "step_extract": _extract,
    "step_batch": _batch,
    "step_parallel": _parallel,
    "step_robust": _robust,
    "step_python": _python,
}
