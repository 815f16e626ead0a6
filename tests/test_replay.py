"""Record provider events to a cassette, and replay them (timed, scaled, instant)."""

from __future__ import annotations

import json

import pytest
import trio
from fake_api_helpers import provider, request, text_of
from sluiceway.engine._events import Usage
from sluiceway.engine._provider_events import (
    BlockStart,
    BlockStop,
    InputJsonChunk,
    MessageDeltaInfo,
    MessageStart,
    MessageStop,
    TextChunk,
    ThinkingChunk,
)
from sluiceway.providers._replay import (
    RecordingProvider,
    ReplayProvider,
    event_from_json,
    event_to_json,
    load_cassette,
)

from sluiceway._errors import OverloadedError, SpecError, StepError


async def _stream(p, req):
    async with p.stream(req) as events:
        return [e async for e in events]


async def _stream_until_error(p, req):
    seen = []
    with pytest.raises(OverloadedError) as info:
        async with p.stream(req) as events:
            async for e in events:
                seen.append(e)
    return seen, info.value


def test_event_json_round_trip():
    events = [
        MessageStart("m", Usage(1, 2, 3, 4), "msg", "req"),
        BlockStart(1, "tool_use", tool_use_id="t", name="n"),
        TextChunk(0, "hé\n"),
        ThinkingChunk(0, "", signature="s"),
        InputJsonChunk(1, '{"a'),
        BlockStop(1),
        MessageDeltaInfo("end_turn", Usage(output_tokens=5), {"stop_sequence": "x"}),
        MessageStop(),
    ]
    assert [event_from_json(json.loads(json.dumps(event_to_json(e)))) for e in events] == events


async def test_record_then_replay_gives_the_same_events(fake_api, tmp_path):
    path = tmp_path / "run.jsonl"
    rec = RecordingProvider(provider(fake_api), path, pipeline="demo")
    recorded = {}
    recorded["a"] = await _stream(
        rec, request("fake:slow?delay_ms=40&text=one two three", step="a")
    )
    recorded["b"] = await _stream(rec, request("fake:tool_use?pieces=5", step="b", turn=1))
    seen, exc = await _stream_until_error(rec, request("fake:error?after=1", step="c"))
    await rec.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await _stream(rec.inner, request("fake:text"))  # the inner provider was closed too
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"sluiceway_cassette": 1, "pipeline": "demo", "provider": "anthropic"}
    first = json.loads(lines[1])
    assert (first["step"], first["turn"], first["attempt"], first["event"]["type"]) == (
        "a",
        0,
        1,
        "message_start",
    )

    replay = ReplayProvider(path, pipeline="demo")
    t0 = trio.current_time()
    again = await _stream(replay, request("ignored", step="a"))
    elapsed = trio.current_time() - t0
    assert again == recorded["a"] and text_of(again) == "one two three"
    recorded_span = json.loads([ln for ln in lines if '"step":"a"' in ln][-1])["t"]
    assert recorded_span * 0.9 <= elapsed < recorded_span + 0.5
    assert await _stream(replay, request("x", step="b", turn=1)) == recorded["b"]
    replayed_seen, replayed_exc = await _stream_until_error(replay, request("x", step="c"))
    assert replayed_seen == seen and text_of(seen) != ""
    assert (
        type(replayed_exc) is type(exc)
        and replayed_exc.step == "c"
        and replayed_exc.message == exc.message
    )
    await replay.aclose()


async def test_recorded_status_error_replays_at_open(fake_api, tmp_path):
    path = tmp_path / "err.jsonl"
    rec = RecordingProvider(provider(fake_api), path, pipeline="p")
    with pytest.raises(OverloadedError):
        await _stream(rec, request("fake:status?code=529&retry_after=4", step="s"))
    await rec.aclose()
    replay = ReplayProvider(load_cassette(path), instant=True)
    with pytest.raises(OverloadedError) as info:
        async with replay.stream(request("x", step="s")):
            raise AssertionError("entered")
    assert info.value.retry_after == 4.0 and info.value.step == "s"


def _write_cassette(path, pipeline="demo"):
    rows = [{"sluiceway_cassette": 1, "pipeline": pipeline}]
    events = [
        (0.5, MessageStart("claude-haiku-4-5", Usage(3, 1))),
        (0.5, BlockStart(0, "text")),
        (1.0, TextChunk(0, "a")),
        (3.0, TextChunk(0, "b")),
        (3.0, BlockStop(0)),
        (3.5, MessageDeltaInfo("end_turn", Usage(output_tokens=2))),
        (3.5, MessageStop()),
    ]
    for t, e in events:
        rows.append({"t": t, "step": "s", "turn": 0, "attempt": 1, "event": event_to_json(e)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [e for _, e in events]


@pytest.mark.parametrize(("speed", "instant"), [(1.0, False), (2.0, False), (1.0, True)])
async def test_replay_on_virtual_time(autojump_clock, tmp_path, speed, instant):
    path = tmp_path / "c.jsonl"
    expected = _write_cassette(path)
    replay = ReplayProvider(path, speed=speed, instant=instant)
    stamps = []
    t0 = trio.current_time()
    async with replay.stream(request("x", step="s")) as events:
        async for e in events:
            stamps.append((trio.current_time() - t0, e))
    assert [e for _, e in stamps] == expected
    offsets = [t for t, _ in stamps]
    if instant:
        assert offsets == [0.0] * 7
    else:
        assert offsets == pytest.approx([t / speed for t in (0.5, 0.5, 1.0, 3.0, 3.0, 3.5, 3.5)])


async def test_long_instant_replay_is_cancellable(autojump_clock, tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"sluiceway_cassette": 1, "pipeline": None}]
    rows += [
        {"t": 0, "step": "s", "turn": 0, "attempt": 1, "event": event_to_json(TextChunk(0, "x"))}
    ] * 1000
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    replay = ReplayProvider(path, instant=True)
    n = 0
    with trio.move_on_after(0) as scope:
        async with replay.stream(request("x", step="s")) as events:
            async for _ in events:
                n += 1
    assert scope.cancelled_caught and n < 1000


def test_other_pipeline_is_an_error(tmp_path):
    path = tmp_path / "c.jsonl"
    _write_cassette(path, pipeline="demo")
    with pytest.raises(SpecError, match="recorded for pipeline 'demo', not 'other'") as info:
        ReplayProvider(path, pipeline="other")
    assert info.value.file == str(path) and info.value.line == 1
    cassette = load_cassette(path)
    assert cassette.pipeline == "demo" and cassette.text("s") == "ab"
    with pytest.raises(SpecError, match="not 'other'"):
        ReplayProvider(cassette, pipeline="other")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "corrupted cassette line"),
        (
            '{"t": 1, "step": "s", "turn": 0, "attempt": 1, "event": {"type": "nope"}}',
            "unknown event type",
        ),
        ('{"t": 1, "step": "s", "turn": 0, "attempt": 1}', "neither an event nor an error"),
        ('{"step": "s", "turn": 0, "attempt": 1, "event": {"type": "message_stop"}}', "corrupted"),
    ],
)
def test_corrupted_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    _write_cassette(path)
    lines = path.read_text().splitlines()
    lines.insert(3, line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError, match=message) as info:
        load_cassette(path)
    assert info.value.line == 4 and str(info.value).startswith(f"{path}:4: ")


def test_not_a_cassette(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"t": 0}\n')
    with pytest.raises(SpecError, match="not a sluiceway cassette"):
        load_cassette(path)
    path.write_text("")
    with pytest.raises(SpecError, match="empty cassette"):
        load_cassette(path)


def test_missing_call_is_a_step_error(tmp_path):
    path = tmp_path / "c.jsonl"
    _write_cassette(path)
    replay = ReplayProvider(path, instant=True)
    with pytest.raises(StepError, match="no call for turn 0, attempt 2") as info:
        replay.stream(request("x", step="s", attempt=2))
    assert info.value.step == "s"


def test_a_cassette_recorded_in_mock_mode_replays_at_no_cost(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    spec = tmp_path / "c.yaml"
    spec.write_text('name: c\nsteps:\n  - {name: a, type: claude, prompt: hi, mock: {response: "one two three"}}\n')
    cli = str(Path(sys.executable).parent / "sluiceway")
    results = []
    for flags in (("--record", "c.cassette"), ("--cassette", "c.cassette", "--instant")):
        done = subprocess.run(
            [cli, "run", str(spec), "--json", "--output-dir", "out", *flags],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        results.append(json.loads(done.stdout))
    assert json.loads((tmp_path / "c.cassette").read_text().splitlines()[0])["provider"] == "mock"
    recorded, replayed = (r["steps"]["a"] for r in results)
    assert recorded["text"] == replayed["text"] == "one two three"
    assert replayed["usage"]["output_tokens"] > 0
    assert (recorded["cost_usd"], replayed["cost_usd"]) == (0.0, 0.0)
