"""Batches that resume instead of paying twice (issue 18, part 2).

Every model call's response is saved as it finishes (``batch/<STEP>/<i>.json``,
``steps/<STEP>.json``, atomically, with the hash of its inputs); a run given
``resume=RUN_DIR`` replays the saved ones whose inputs hash the same, marked
``replayed``, and calls only the rest. Here: the store on its own (atomic
writes, the input hash, corrupt files), whole runs in mock mode through the
Python API (events, invariants, ``result.json``'s totals), the refusals, and the
issue's own check through the CLI against the fake Messages API: a 500-task
batch stopped after 300 tasks, resumed with exactly the 200 missing requests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from sluiceway.engine import Delta, Done, Event, Message, Response, StepStarted, TextBlock, Usage
from sluiceway.specs import loads

import sluiceway
from sluiceway._execution._resume import call_input_hash
from sluiceway._execution._saved import SavedResponses, response_from_json, response_to_json
from sluiceway.testing import check_invariants
from sluiceway.testing.fake_api import FakeAPI

SLUICEWAY = str(Path(sys.executable).parent / "sluiceway")
#: Real-time guard for each CLI subprocess (500 tasks against the fake server).
PROCESS_TIMEOUT = 240.0

SPEC = """
name: resumable
steps:
  - name: intro
    type: claude
    prompt: "introduce {{vars.topic}}"
    claude_options: {system_prompt: "be brief"}
    mock: {response: "An intro."}
  - name: batch
    type: claude_batch
    items: ITEMS
    prompt: "say {{item}}"
    batch_config: {max_parallel: 3}
    mock: {response: "said it", pattern: realistic}
variables: {topic: rivers}
"""


def spec_of(n: int = 8, text: str = SPEC) -> Any:
    return loads(text.replace("ITEMS", json.dumps([f"item{i}" for i in range(n)])))


def a_response(text: str = "hello there") -> Response:
    message = Message(
        run_id="r", step="s", role="assistant", content=(TextBlock(text),),
        usage=Usage(10, 3), stop_reason="end_turn",
    )
    return Response(text=text, messages=(message,), usage=Usage(10, 3), cost_usd=0.25, model="m1", stop_reason="end_turn")


async def collect(spec: Any, tmp_path: Path, **kw: Any) -> tuple[list[Event], Any]:
    """Run *spec* through ``open_run``; every event of the run stream, and the result."""
    async with sluiceway.open_run(spec, output_dir=tmp_path, handlers=[], **kw) as run:
        events = [event async for event in run.events]
        result = await run.result()
    return events, result


# --------------------------------------------------------------------------- the store


def test_saved_response_round_trip_and_hash_check(tmp_path: Path) -> None:
    first = SavedResponses(folder=tmp_path / "a" / "batch" / "b", previous=None, step="b")
    first.save(3, "sha256:x", a_response())
    data = json.loads((tmp_path / "a" / "batch" / "b" / "3.json").read_text())
    assert (data["sluiceway_saved"], data["key"], data["input_hash"]) == (1, 3, "sha256:x")
    assert os.listdir(tmp_path / "a" / "batch" / "b") == ["3.json"]  # no temporary file left
    again = SavedResponses(folder=tmp_path / "c", previous=tmp_path / "a" / "batch" / "b", step="b")
    got = again.saved(3, "sha256:x")
    assert got is not None
    assert (got.text, got.usage, got.cost_usd, got.model) == ("hello there", Usage(10, 3), 0.25, "m1")
    assert got.messages[0].content == (TextBlock("hello there"),)
    assert again.saved(3, "sha256:other") is None  # other inputs: called again
    assert again.saved(4, "sha256:x") is None  # never saved


def test_response_json_keeps_tool_turns() -> None:
    from sluiceway.engine import ToolResultBlock, ToolUseBlock

    turn = Message(run_id="r", step="s", role="assistant", content=(TextBlock("look"), ToolUseBlock("t1", "Read", {"p": 1})),
                   usage=Usage(5, 2), stop_reason="tool_use")
    answer = Message(run_id="r", step="s", role="user", content=(ToolResultBlock("t1", "file text", False),))
    response = Response(text="look", messages=(turn, answer), usage=Usage(5, 2), output={"k": [1, 2]}, status="max_turns")
    back = response_from_json(json.loads(json.dumps(response_to_json(response))))
    assert [m.content for m in back.messages] == [turn.content, answer.content]
    assert (back.output, back.status, back.messages[0].stop_reason) == ({"k": [1, 2]}, "max_turns", "tool_use")


def test_a_write_that_dies_midway_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SavedResponses(folder=tmp_path, previous=None, step="b")

    def dies(*args: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", dies)  # the write got as far as the rename
    with pytest.warns(sluiceway.ResumeWarning, match="response 0 not saved: disk gone"):
        store.save(0, "sha256:x", a_response())
    assert os.listdir(tmp_path) == []  # neither the file nor its temporary


def test_a_half_written_or_foreign_file_is_not_trusted(tmp_path: Path) -> None:
    writer = SavedResponses(folder=tmp_path, previous=None, step="b")
    writer.save(0, "sha256:x", a_response())
    whole = (tmp_path / "0.json").read_text()
    (tmp_path / "1.json").write_text(whole[: len(whole) // 2])  # a crash of something that did not write atomically
    (tmp_path / "2.json").write_text(json.dumps({"sluiceway_saved": 99, "input_hash": "sha256:x"}))
    (tmp_path / ".3.json.abc.tmp").write_text(whole)  # a temporary a crash left: never read
    reader = SavedResponses(folder=tmp_path / "new", previous=tmp_path, step="b")
    with pytest.warns(sluiceway.ResumeWarning, match=r"1\.json: not a valid saved response"):
        assert reader.saved(1, "sha256:x") is None
    with pytest.warns(sluiceway.ResumeWarning, match=r"2\.json: not a valid saved response .*format 1"):
        assert reader.saved(2, "sha256:x") is None
    assert reader.saved(3, "sha256:x") is None
    assert reader.saved(0, "sha256:x") is not None


def test_the_input_hash_follows_what_the_call_sends(tmp_path: Path) -> None:
    base = spec_of(2)

    class State:
        spec = base
        options = sluiceway._execution.RunOptions()
        workspace = tmp_path

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    step = base.steps[0]
    mock, live = Named("mock"), Named("anthropic")

    def hash_of(step: Any = step, text: str = "introduce rivers", provider: Any = live) -> str:
        return call_input_hash(State, step, text, provider)  # type: ignore[arg-type]

    same = hash_of()
    assert same == hash_of() and same.startswith("sha256:")
    opts = step.claude_options
    changed = {
        "prompt": hash_of(text="introduce lakes"),
        "model": hash_of(attrs.evolve(step, claude_options=attrs.evolve(opts, model="claude-opus-4-1"))),
        "system": hash_of(attrs.evolve(step, claude_options=attrs.evolve(opts, system_prompt="be long"))),
        "max_tokens": hash_of(attrs.evolve(step, claude_options=attrs.evolve(opts, max_tokens=99))),
        "temperature": hash_of(attrs.evolve(step, claude_options=attrs.evolve(opts, temperature=0.5))),
        "tools": hash_of(attrs.evolve(step, claude_options=attrs.evolve(opts, allowed_tools=("Read",)))),
        "provider": hash_of(provider=mock),
    }
    assert len(set(changed.values()) | {same}) == len(changed) + 1, changed
    # a timeout is not an input: a resumed run may give slow calls more time
    assert hash_of(attrs.evolve(step, claude_options=attrs.evolve(opts, idle_timeout_ms=5000))) == same
    # the mock block is an input in mock mode only
    other_mock = attrs.evolve(step, mock=attrs.evolve(step.mock, response="Another."))
    assert hash_of(other_mock) == same
    assert hash_of(other_mock, provider=mock) != hash_of(provider=mock)


# --------------------------------------------------------------------------- whole runs (mock mode)


def _replayed_steps(events: list[Event]) -> set[str]:
    started = {e.step for e in events if isinstance(e, StepStarted) and e.replayed}
    done = {e.step for e in events if isinstance(e, Done) and e.replayed}
    assert started == done  # StepStarted and Done agree
    return started


async def test_a_resumed_run_replays_what_was_saved_and_calls_the_rest(tmp_path: Path) -> None:
    spec = spec_of(8)
    events1, first = await collect(spec, tmp_path)
    assert first.ok and first.requests == 9 and first.reused.responses == 0
    assert _replayed_steps(events1) == set()
    batch_dir = first.run_dir / "batch" / "batch"
    assert sorted(os.listdir(batch_dir), key=lambda n: int(n.split(".")[0])) == [f"{i}.json" for i in range(8)]
    assert os.listdir(first.run_dir / "steps") == ["intro.json"]
    # a run that stopped after some tasks: tasks 2, 5 and 7 have no saved response
    for i in (2, 5, 7):
        (batch_dir / f"{i}.json").unlink()

    events2, second = await collect(spec, tmp_path, resume=first.run_dir)
    check_invariants(events2)
    assert second.ok and second.run_dir != first.run_dir and second.resumed_from == first.run_dir
    assert second.requests == 3  # the three missing tasks, nothing else
    assert second.steps["batch"].output == first.steps["batch"].output == ["said it"] * 8
    assert second.steps["intro"].text == "An intro."
    replayed = _replayed_steps(events2)
    assert replayed == {"intro", *(f"batch[{i}]" for i in range(8) if i not in (2, 5, 7))}
    # a replayed sub-step streams like a call: StepStarted, its text, its Message, Done; one terminal
    of_one = [type(e).__name__ for e in events2 if e.step == "batch[0]"]
    assert of_one == ["StepStarted", "Delta", "Message", "Done"]
    assert "".join(e.content for e in events2 if isinstance(e, Delta) and e.step == "batch[0]") == "said it"
    # the new folder holds every response: it can be resumed in turn, with no call at all
    assert len(os.listdir(second.run_dir / "batch" / "batch")) == 8
    _, third = await collect(spec, tmp_path, resume=second.run_dir)
    assert third.requests == 0 and third.reused.responses == 9
    assert third.steps["batch"].output == first.steps["batch"].output

    written = json.loads((second.run_dir / "result.json").read_text())
    assert written["resumed_from"] == str(first.run_dir)
    assert written["paid"]["requests"] == 3
    assert written["reused"]["responses"] == 6
    assert written["reused"]["requests"] == 6
    total, reused, paid = written["usage"], written["reused"]["usage"], written["paid"]["usage"]
    assert all(total[k] == reused[k] + paid[k] for k in total)
    assert paid["output_tokens"] > 0 and reused["output_tokens"] > 0
    assert (written["steps"]["batch"]["reused"], written["steps"]["intro"]["reused"]) == (5, 1)
    marker = json.loads((second.run_dir / "run.json").read_text())
    assert (marker["pipeline"], marker["resumed_from"]) == ("resumable", str(first.run_dir))


TOOL_SPEC = """
name: tooled
steps:
  - name: edit
    type: claude
    prompt: double the a's
    claude_options: {allowed_tools: [Edit], max_turns: 5}
    mock:
      turns:
        - {text: "Editing.", tool_calls: [{name: Edit, input: {file_path: sidefx.txt, old_string: a, new_string: aa, replace_all: true}}]}
        - {text: "The file is edited now."}
"""


async def test_a_replayed_tool_step_runs_no_tool_again(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "sidefx.txt").write_text("a\n")
    spec = loads(TOOL_SPEC)
    events1, first = await collect(spec, tmp_path, workspace=ws)
    assert first.ok and (ws / "sidefx.txt").read_text() == "aa\n" and first.requests == 2
    events2, second = await collect(spec, tmp_path, workspace=ws, resume=first.run_dir)
    check_invariants(events2)
    assert (ws / "sidefx.txt").read_text() == "aa\n"  # the Edit did not run again ("aaaa")
    assert second.requests == 0 and second.reused.requests == 2
    kinds = [type(e).__name__ for e in events2 if e.step == "edit"]
    # each block whole: one Delta per text block, one ToolInputDelta per tool input
    assert kinds == [
        "StepStarted", "Delta", "ToolInputDelta", "ToolUse", "Message", "ToolResult", "Delta", "Message", "Done",
    ]
    old, new = first.steps["edit"].response, second.steps["edit"].response
    assert new.text == old.text == "Editing.The file is edited now."
    assert [(m.role, m.content) for m in new.messages] == [(m.role, m.content) for m in old.messages]
    assert (new.usage, new.cost_usd, new.stop_reason) == (old.usage, old.cost_usd, old.stop_reason)


async def test_changed_inputs_are_called_again(tmp_path: Path) -> None:
    _, first = await collect(spec_of(4), tmp_path)
    changed = spec_of(4, SPEC.replace('"say {{item}}"', '"shout {{item}}"').replace("topic: rivers", "topic: lakes"))
    events, second = await collect(changed, tmp_path, resume=first.run_dir)
    assert second.requests == 5 and second.reused.responses == 0
    assert _replayed_steps(events) == set()
    # only the changed item runs again
    one = spec_of(4, SPEC.replace("ITEMS", '["item0", "CHANGED", "item2", "item3"]'))
    events, third = await collect(one, tmp_path, resume=first.run_dir)
    assert third.requests == 1
    assert _replayed_steps(events) == {"intro", "batch[0]", "batch[2]", "batch[3]"}


async def test_a_corrupt_saved_response_runs_again_with_a_warning(tmp_path: Path) -> None:
    _, first = await collect(spec_of(3), tmp_path)
    (first.run_dir / "batch" / "batch" / "1.json").write_text('{"sluiceway_saved": 1, "respo')
    with pytest.warns(sluiceway.ResumeWarning, match=r"batch/batch/1\.json: not a valid saved response"):
        _, second = await collect(spec_of(3), tmp_path, resume=first.run_dir)
    assert second.requests == 1 and second.reused.responses == 3  # intro and tasks 0, 2
    assert second.steps["batch"].output == ["said it"] * 3


async def test_resume_refuses_what_is_not_a_run_of_this_pipeline(tmp_path: Path) -> None:
    _, first = await collect(spec_of(2), tmp_path)
    with pytest.raises(sluiceway.ResumeError, match="no such folder"):
        await collect(spec_of(2), tmp_path, resume=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(sluiceway.ResumeError, match="is not a run folder"):
        await collect(spec_of(2), tmp_path, resume=tmp_path / "empty")
    other = spec_of(2, SPEC.replace("name: resumable", "name: another"))
    with pytest.raises(sluiceway.ResumeError, match="is a run of pipeline 'resumable', not of 'another'"):
        await collect(other, tmp_path, resume=first.run_dir)


def test_the_cli_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(SPEC.replace("ITEMS", '["a"]'))
    proc = subprocess.run(
        [SLUICEWAY, "run", str(path), "--resume", str(tmp_path), "-q"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"sluiceway run: --resume {str(tmp_path)!r} is not a run folder (it has neither run.json nor "
        "result.json); give the folder of one run, such as outputs/run_20250101-120000_abc123"
    )


# --------------------------------------------------------------------------- the check (live, CLI)

LIVE_SPEC = """
name: big
steps:
  - name: many
    type: claude_batch
    items: ITEMS
    prompt: "task {{index}}: {{item}}"
    batch_config: {max_parallel: 20}
    claude_options: {model: claude-sonnet-4-5, max_tokens: 64}
"""


def _cli(spec: Path, out: Path, api: FakeAPI, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-fake", "ANTHROPIC_BASE_URL": api.url, "NO_COLOR": "1"}
    proc = subprocess.run(
        [SLUICEWAY, "run", str(spec), "--mode", "live", "--output-dir", str(out), "--json", "-q", *extra],
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT, env=env, cwd=out,
    )
    return proc, json.loads(proc.stdout)


def test_a_batch_stopped_at_300_of_500_resumes_with_only_the_200_missing_requests(tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text(LIVE_SPEC.replace("ITEMS", json.dumps([f"w{i}" for i in range(500)])))
    with FakeAPI(scenario="echo") as api:
        # the account runs dry after 300 calls: every later call is refused (a 400, not retried)
        api.script(*["echo"] * 300)
        api.default_scenario = "status?code=400"
        stopped, stopped_json = _cli(spec, tmp_path, api)
        assert stopped.returncode == 1, stopped.stderr
        assert api.stats()["requests"] == 500 and api.stats()["completed"] == 300
        run_dir = Path(stopped_json["run_dir"])
        assert stopped_json["steps"]["many"]["status"] == "failed"
        assert "200 of 500 tasks failed" in stopped_json["steps"]["many"]["error"]
        assert len(os.listdir(run_dir / "batch" / "many")) == 300

        api.reset()
        api.default_scenario = "echo"
        resumed, resumed_json = _cli(spec, tmp_path, api, "--resume", str(run_dir))
        assert resumed.returncode == 0, resumed.stderr
        assert api.stats()["requests"] == 200  # the fake server's own count: only the missing tasks
        assert resumed_json["paid"]["requests"] == 200
        assert resumed_json["reused"]["responses"] == 300 and resumed_json["reused"]["requests"] == 300
        assert resumed_json["resumed_from"] == str(run_dir)

        api.reset()
        whole, whole_json = _cli(spec, tmp_path, api)  # the same batch, never interrupted
        assert whole.returncode == 0 and api.stats()["requests"] == 500
    outputs = resumed_json["steps"]["many"]["output"]
    assert outputs == whole_json["steps"]["many"]["output"]
    assert outputs == [f"echo: task {i}: w{i}" for i in range(500)]
    assert resumed_json["usage"] == whole_json["usage"]
    assert resumed_json["cost_usd"] == pytest.approx(whole_json["cost_usd"])
    assert resumed_json["reused"]["cost_usd"] + resumed_json["paid"]["cost_usd"] == pytest.approx(whole_json["cost_usd"])


@pytest.fixture
def echo_api() -> Any:
    """A fake Messages API of this test's own (its counters are this test's), answering ``echo``."""
    with FakeAPI(scenario="echo") as api:
        yield api


async def test_a_live_resume_replays_with_the_invariants_holding(tmp_path: Path, echo_api: FakeAPI) -> None:
    """In-process against the fake server (the real SDK): the replayed and the called sub-steps' events."""
    spec = loads(LIVE_SPEC.replace("ITEMS", json.dumps([f"w{i}" for i in range(30)])))
    live = {"mode": "live", "live_options": {"base_url": echo_api.url, "api_key": "sk-fake"}}
    echo_api.script(*["echo"] * 18)
    echo_api.default_scenario = "status?code=400"
    _, first = await collect(spec, tmp_path, **live)
    assert first.status == "failed"
    echo_api.reset()
    echo_api.default_scenario = "echo"
    events, second = await collect(spec, tmp_path, resume=first.run_dir, **live)
    assert echo_api.stats()["requests"] == 12
    check_invariants(events)
    assert second.ok and second.requests == 12
    assert len(_replayed_steps(events)) == 18
    assert second.steps["many"].output == [f"echo: task {i}: w{i}" for i in range(30)]
    terminals = [e for e in events if isinstance(e, Done | sluiceway.engine.Failed | sluiceway.engine.Cancelled)]
    assert sorted(e.step for e in terminals if e.step.startswith("many[")) == sorted(f"many[{i}]" for i in range(30))


def test_a_batch_interrupted_with_ctrl_c_resumes_with_only_the_missing_requests(tmp_path: Path) -> None:
    """The other realistic stop: SIGINT mid-batch. Whatever finished was saved whole; the rest is called."""
    spec = tmp_path / "big.yaml"
    spec.write_text(LIVE_SPEC.replace("ITEMS", json.dumps([f"w{i}" for i in range(500)])))
    out = tmp_path / "out"
    out.mkdir()
    with FakeAPI(scenario="echo?delay_ms=20") as api:
        env = {**os.environ, "ANTHROPIC_API_KEY": "sk-fake", "ANTHROPIC_BASE_URL": api.url, "NO_COLOR": "1"}
        proc = subprocess.Popen(
            [SLUICEWAY, "run", str(spec), "--mode", "live", "--output-dir", str(out), "-q"],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while len(list(out.glob("run_*/batch/many/*.json"))) < 150:
            assert proc.poll() is None and time.monotonic() < deadline, "the batch ended before it was interrupted"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
        assert proc.returncode == 130, stderr
        (run_dir,) = out.glob("run_*")
        assert json.loads((run_dir / "result.json").read_text())["status"] == "cancelled"
        saved = {int(p.stem): json.loads(p.read_text()) for p in (run_dir / "batch" / "many").glob("*.json")}
        assert 150 <= len(saved) < 500
        assert all(s["response"]["text"] == f"echo: task {i}: w{i}" for i, s in saved.items())  # each one whole

        api.reset()
        api.default_scenario = "echo"
        resumed, resumed_json = _cli(spec, out, api, "--resume", str(run_dir))
        assert resumed.returncode == 0, resumed.stderr
        assert api.stats()["requests"] == 500 - len(saved)
    assert resumed_json["reused"]["responses"] == len(saved)
    assert resumed_json["steps"]["many"]["output"] == [f"echo: task {i}: w{i}" for i in range(500)]
