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


# --- the cassette format's edges: exact errors, defaults, header fields ---------------------


def _rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _ev(t, e, step="s", turn=0, attempt=1):
    return {"t": t, "step": step, "turn": turn, "attempt": attempt, "event": event_to_json(e)}


def test_event_from_json_errors_name_the_type():
    with pytest.raises(ValueError) as info:
        event_from_json({"type": "nope"})
    assert str(info.value) == "unknown event type 'nope'"
    with pytest.raises(ValueError) as info:
        event_from_json({"index": 0, "text": "a"})  # no type at all
    assert str(info.value) == "unknown event type None"
    with pytest.raises(ValueError) as info:
        event_from_json({"type": "text", "index": 0, "text": "a", "colour": "red"})
    assert str(info.value).startswith("bad text event: ") and "colour" in str(info.value)


def test_each_header_error_is_one_issue_with_its_file_and_line(tmp_path):
    from sluiceway._errors import SpecIssue

    path = tmp_path / "c.jsonl"
    name = str(path)

    def issue_of(*rows):
        _rows(path, rows)
        with pytest.raises(SpecError) as info:
            load_cassette(path)
        return info.value

    # a blank first line: the header is the file's second line
    exc = issue_of("", {"t": 0})
    assert exc.issues == (SpecIssue(name, 2, None, "", "not a sluiceway cassette (no header line)"),)
    assert str(exc) == f"{name}:2: not a sluiceway cassette (no header line)"
    exc = issue_of("", "", {"sluiceway_cassette": 2, "pipeline": "p"})
    assert exc.issues == (
        SpecIssue(name, 3, None, "", "cassette version 2 is not supported (expected 1)"),
    )
    path.write_text("\n\n")
    with pytest.raises(SpecError) as info:
        load_cassette(path)
    assert info.value.issues == (SpecIssue(name, 1, None, "", "empty cassette (no header line)"),)
    exc = issue_of({"sluiceway_cassette": 1}, {"t": 1, "step": "s", "turn": 0, "attempt": 1})
    assert exc.issues == (
        SpecIssue(name, 2, None, "", "corrupted cassette line: neither an event nor an error"),
    )
    assert str(exc) == f"{name}:2: corrupted cassette line: neither an event nor an error"


def test_blank_lines_are_skipped_and_each_entry_keeps_its_line(tmp_path):
    path = tmp_path / "c.jsonl"
    _rows(
        path,
        [
            {"sluiceway_cassette": 1, "pipeline": "p", "provider": "mock"},
            _ev(0.1, TextChunk(0, "a")),
            "",
            "   ",
            _ev(0.2, TextChunk(0, "b")),
            {"t": 0.3, "step": "s", "turn": 0, "attempt": 1, "error": {"type": "OverloadedError"}},
        ],
    )
    cassette = load_cassette(path)
    assert cassette.provider == "mock" and cassette.pipeline == "p"
    entries = cassette.calls[("s", 0, 1)]
    assert [(e.t, e.line) for e in entries] == [(0.1, 2), (0.2, 5), (0.3, 6)]
    assert cassette.text("s") == "ab"
    assert ReplayProvider(cassette).recorded_name == "mock"
    assert ReplayProvider(path).recorded_name == "mock"
    _rows(path, [{"sluiceway_cassette": 1}])  # an older header without the provider
    assert load_cassette(path).provider is None


def test_cassette_events_and_text_default_to_turn_0_attempt_1(tmp_path):
    path = tmp_path / "c.jsonl"
    _rows(
        path,
        [
            {"sluiceway_cassette": 1},
            _ev(0, TextChunk(0, "t0a1")),
            _ev(0, TextChunk(0, "t1a1"), turn=1),
            _ev(0, TextChunk(0, "t0a2"), attempt=2),
            {"t": 0, "step": "s", "turn": 0, "attempt": 2, "error": {"type": "OverloadedError"}},
        ],
    )
    cassette = load_cassette(path)
    assert cassette.events("s") == [TextChunk(0, "t0a1")]
    assert cassette.text("s") == "t0a1"
    assert cassette.text("s", 1) == "t1a1"
    assert cassette.text("s", 0, 2) == "t0a2"
    assert cassette.events("s", 0, 2) == [TextChunk(0, "t0a2")]  # the error is left out
    assert cassette.events("other") == [] and cassette.text("s", 5) == ""


def test_replay_checks_the_pipeline_and_speed_of_a_loaded_cassette(tmp_path):
    from sluiceway._errors import SpecIssue

    path = tmp_path / "c.jsonl"
    _write_cassette(path, pipeline="demo")
    with pytest.raises(SpecError) as info:
        ReplayProvider(load_cassette(path), pipeline="other")
    assert info.value.issues == (
        SpecIssue(str(path), 1, None, "", "cassette was recorded for pipeline 'demo', not 'other'"),
    )
    for speed in (0, 0.0, -1.0):
        with pytest.raises(ValueError) as info:
            ReplayProvider(path, speed=speed)
        assert str(info.value) == f"speed must be > 0, got {speed!r}"
    assert ReplayProvider(path, speed=0.001).speed == 0.001


async def test_a_closed_replay_provider_refuses_new_calls(tmp_path):
    path = tmp_path / "c.jsonl"
    _write_cassette(path)
    replay = ReplayProvider(path, instant=True)
    assert len(await _stream(replay, request("x", step="s"))) == 7
    await replay.aclose()
    with pytest.raises(trio.ClosedResourceError) as info:
        replay.stream(request("x", step="s"))
    assert str(info.value) == "the replay provider is closed"
    await replay.aclose()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        replay.stream(request("x", step="s"))


@pytest.mark.parametrize(
    ("error", "cls", "message"),
    [
        ({"type": "OverloadedError", "message": "busy", "retry_after": 2.5}, OverloadedError, "busy"),
        ({"type": "OverloadedError"}, OverloadedError, ""),
        # not a ProviderError: replayed as the base class
        ({"type": "SpecError", "message": "m"}, None, "m"),
        ({"type": "NoSuchError", "message": "m"}, None, "m"),
        ({"message": "m"}, None, "m"),
    ],
)
async def test_a_recorded_error_replays_as_its_class_after_its_delay(
    autojump_clock, tmp_path, error, cls, message
):
    from sluiceway._errors import ProviderError

    path = tmp_path / "c.jsonl"
    _rows(path, [{"sluiceway_cassette": 1}, {"t": 2.0, "step": "s", "turn": 0, "attempt": 1, "error": error}])
    replay = ReplayProvider(path)
    t0 = trio.current_time()
    with pytest.raises(ProviderError) as info:
        async with replay.stream(request("x", step="s")):
            raise AssertionError("entered")
    assert trio.current_time() - t0 == pytest.approx(2.0)
    assert type(info.value) is (cls or ProviderError)
    assert (info.value.message, info.value.step) == (message, "s")
    assert info.value.retry_after == error.get("retry_after")


async def test_instant_replay_yields_to_other_tasks_every_64_events(tmp_path):
    path = tmp_path / "c.jsonl"
    _rows(path, [{"sluiceway_cassette": 1}] + [_ev(0, TextChunk(0, "x"))] * 1000)
    replay = ReplayProvider(path, instant=True)
    seen = []
    observed = []
    done = trio.Event()

    async def consume():
        async with replay.stream(request("x", step="s")) as events:
            async for e in events:
                seen.append(e)
        done.set()

    async def watch():
        while not done.is_set():
            observed.append(len(seen))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        nursery.start_soon(consume)
    assert len(seen) == 1000
    progress = sorted(set(observed))
    # the consumer only ever stops just before events 0, 64, 128, ...
    assert all(n % 64 == 0 for n in progress), progress
    # and it does stop there, again and again (the scheduler may merge a few of its runs)
    assert len(progress) >= 6, progress


# --- recording: the file as it is written -----------------------------------------------------


class _Scripted:
    """A provider outside the project (as a user might write one): sleeps, then yields."""

    name = "scripted"

    def __init__(self, script):
        self.script = script  # [(seconds to sleep, event)]
        self.exits = []
        self.closed = False

    def stream(self, req):
        return _ScriptedCall(self)

    async def aclose(self):
        self.closed = True


class _ScriptedCall:
    def __init__(self, provider):
        self.provider = provider

    async def __aenter__(self):
        return self._gen()

    async def _gen(self):
        for seconds, event in self.provider.script:
            await trio.sleep(seconds)
            yield event

    async def __aexit__(self, exc_type, exc, tb):
        self.provider.exits.append((exc_type, exc, tb))
        return None


async def test_recording_writes_utf8_times_to_the_microsecond_and_flushes_each_call(
    autojump_clock, tmp_path
):
    path = tmp_path / "rec.jsonl"
    inner = _Scripted([(0.5, TextChunk(0, "hé")), (0.1234567, TextChunk(0, "→"))])
    rec = RecordingProvider(inner, path, pipeline="p")
    assert rec.name == "scripted"
    events = await _stream(rec, request("x", step="s", turn=2, attempt=3))
    assert events == [TextChunk(0, "hé"), TextChunk(0, "→")]
    assert inner.exits == [(None, None, None)]
    # the call's lines are on disk as soon as its block is left, before aclose
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == '{"sluiceway_cassette":1,"pipeline":"p","provider":"scripted"}'
    assert lines[1] == '{"t":0.5,"step":"s","turn":2,"attempt":3,"event":{"type":"text","index":0,"text":"hé"}}'
    assert json.loads(lines[2])["t"] == 0.623457 and '"text":"→"' in lines[2]
    await rec.aclose()
    assert inner.closed
    assert load_cassette(path).text("s", 2, 3) == "hé→"


async def test_recording_passes_the_exception_that_ends_the_block_to_the_inner_call(tmp_path):
    inner = _Scripted([(0, TextChunk(0, "a"))])
    rec = RecordingProvider(inner, tmp_path / "rec.jsonl")
    with pytest.raises(KeyError) as info:
        async with rec.stream(request("x", step="s")) as events:
            async for _ in events:
                raise KeyError("stop")
    await rec.aclose()
    [(exc_type, exc, tb)] = inner.exits
    assert exc_type is KeyError and exc is info.value and tb is info.value.__traceback__


async def test_iterating_a_recorded_call_outside_its_block_is_a_clear_error(tmp_path):
    rec = RecordingProvider(_Scripted([]), tmp_path / "rec.jsonl")
    call = rec.stream(request("x", step="s"))
    with pytest.raises(AssertionError, match=r"^iterate inside 'async with'"):
        await call.__anext__()
    await rec.aclose()


async def _record_mock(path, text):
    from sluiceway.engine import ModelRequest
    from sluiceway.providers import MockProvider

    rec = RecordingProvider(MockProvider(clock_scale=0), path)
    await _stream(rec, ModelRequest(step="s", model="m", messages=(), mock={"response": text}))
    await rec.aclose()


def test_a_cassette_is_utf8_under_an_ascii_locale(tmp_path):
    """Recorded and read while the locale's encoding is ASCII, a cassette still holds UTF-8 text
    and reads back the same (the file's encoding does not follow the machine's locale)."""
    import locale

    path = tmp_path / "c.jsonl"
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        with open(tmp_path / "probe", "w") as probe:  # noqa: PTH123 - the locale's default encoding
            assert probe.encoding.lower() in ("ascii", "ansi_x3.4-1968"), probe.encoding
        trio.run(_record_mock, path, "à bientôt →")
        loaded_there = load_cassette(path).text("s")
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    assert loaded_there == "à bientôt →"
    assert '"text":"à "' in path.read_text(encoding="utf-8")
    assert load_cassette(path).text("s") == "à bientôt →"
