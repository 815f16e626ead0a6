"""Whole runs in live mode against the fake Messages API, through the facade; record then replay."""

from __future__ import annotations

import pytest
from sluiceway.providers._replay import load_cassette

import sluiceway

SPEC = """\
name: live_demo
defaults:
  pricing:
    claude-haiku-4-5: {input: 2.0, output: 4.0}
steps:
  - name: greet
    type: claude
    prompt: "Say hello."
    claude_options:
      model: "{model}"
    stream: true
    stream_handler: buffer
"""


def _spec(tmp_path, model):
    path = tmp_path / "live.yaml"
    path.write_text(SPEC.replace("{model}", model))
    return path


@pytest.fixture
def live_env(fake_api, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-fake")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)


async def test_live_run_streams_text_usage_and_cost(live_env, tmp_path):
    path = _spec(tmp_path, "fake:text?text=Hello from live&reply_model=claude-haiku-4-5-20251001")
    result = await sluiceway.run(path, mode="live", output_dir=tmp_path / "out")
    assert result.status == "ok", result.error
    step = result.steps["greet"]
    assert step.text == "Hello from live"
    response = step.response
    assert response.usage.input_tokens == 25 and response.usage.output_tokens == 3
    assert response.cost_usd == pytest.approx((25 * 2.0 + 3 * 4.0) / 1e6)


async def test_live_failure_names_the_step(live_env, tmp_path):
    path = _spec(tmp_path, "fake:status?code=401")
    result = await sluiceway.run(path, mode="live", output_dir=tmp_path / "out")
    assert result.status == "failed" and result.failed_step == "greet"
    assert "key was rejected" in str(result.error)


async def test_record_then_replay_through_the_engine(live_env, tmp_path, monkeypatch):
    from sluiceway.specs import load

    from sluiceway._execution import RunOptions, execute

    cassette = tmp_path / "run.jsonl"
    spec = load(_spec(tmp_path, "fake:slow?delay_ms=20&text=one two three"))
    live = await execute(
        spec, RunOptions(mode="live", output_dir=tmp_path / "a", record=str(cassette))
    )
    assert live.status == "ok" and live.steps["greet"].text == "one two three"
    assert load_cassette(cassette, pipeline="live_demo").text("greet") == "one two three"

    monkeypatch.delenv("ANTHROPIC_API_KEY")  # replay needs no key
    replayed = await execute(
        spec,
        RunOptions(mode="replay", cassette=str(cassette), instant=True, output_dir=tmp_path / "b"),
    )
    assert replayed.status == "ok"
    assert replayed.steps["greet"].text == "one two three"
    assert replayed.steps["greet"].response.usage == live.steps["greet"].response.usage


async def test_live_options_reach_the_provider_and_the_run_uses_it(live_env, tmp_path):
    from sluiceway.specs import load

    from sluiceway._execution import RunOptions, open_mode_provider

    path = _spec(tmp_path, "fake:text?text=tuned&reply_model=claude-haiku-4-5-20251001")
    provider = open_mode_provider(load(path), RunOptions(mode="live", live_options={"max_starting": 2, "streams_per_client": 3}))
    try:
        assert (provider.max_starting, provider.streams_per_client) == (2, 3)
    finally:
        await provider.aclose()
    unlimited = open_mode_provider(load(path), RunOptions(mode="live", live_options={"max_starting": None}))
    try:
        assert unlimited.max_starting is None and unlimited.streams_per_client == 64
    finally:
        await unlimited.aclose()
    result = await sluiceway.run(
        path, mode="live", output_dir=tmp_path / "out", live_options={"max_starting": 1, "streams_per_client": 1}
    )
    assert result.status == "ok", result.error
    assert result.steps["greet"].text == "tuned"


@pytest.mark.parametrize(
    ("mode", "live_options", "message"),
    [
        ("mock", {"max_starting": 4}, r"live options \(max_starting\) apply to live mode's own provider, not to mock mode"),
        ("live", {"max_startng": 4}, r"live mode: bad live options: .*max_startng"),
        ("live", {"max_starting": 0}, r"live mode: bad live options: max_starting must be at least 1"),
        ("live", {"streams_per_client": 0}, r"streams_per_client must be at least 1"),
    ],
)
async def test_bad_live_options_fail_before_the_run(live_env, tmp_path, mode, live_options, message):
    path = _spec(tmp_path, "fake:text?text=x")
    with pytest.raises(sluiceway.ModeUnavailableError, match=message):
        await sluiceway.run(path, mode=mode, output_dir=tmp_path / "out", live_options=live_options)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
