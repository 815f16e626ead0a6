"""Live mode through the facade, against the fake Messages API (real loopback HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sluiceway.specs import ClaudeOptions, ClaudeStep, Pipeline

import sluiceway

SPEC = Pipeline(
    name="live",
    steps=(
        ClaudeStep(
            name="ask",
            prompt="say tokens",
            stream_handler="buffer",
            claude_options=ClaudeOptions(model="fake:text?deltas=5"),
        ),
    ),
)


async def test_live_mode_uses_the_anthropic_provider(
    tmp_path: Path, fake_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    result = await sluiceway.run(SPEC, mode="live", output_dir=tmp_path)
    assert result.status == "ok", result.error
    step = result.steps["ask"]
    assert step.text == "tok0 tok1 tok2 tok3 tok4 "
    assert step.response.usage.output_tokens == 5
    assert result.handlers["ask"][0].text() == step.text


async def test_live_mode_without_key_fails_before_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(sluiceway.AuthenticationError, match="ANTHROPIC_API_KEY"):
        await sluiceway.run(SPEC, mode="live", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
