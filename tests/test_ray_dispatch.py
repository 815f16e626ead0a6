"""What the Ray driver does with the tasks of an actor that died (no cluster needed: Ray's error
classes and the nursery are stood in for; the Ray tests kill a real actor)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import trio
from sluiceway.engine import (
    Delta,
    Done,
    Event,
    Message,
    ModelRequest,
    Response,
    Retrying,
    RunContext,
    StepStarted,
    TextBlock,
    Usage,
)

from sluiceway._execution._step_batch_ray import _Dispatcher, _Task
from sluiceway._ray._jobs import ActorSettings


class ActorDied(Exception):
    pass


class Unavailable(Exception):
    pass


class Nursery:
    def __init__(self) -> None:
        self.started: list[tuple[Any, ...]] = []

    def start_soon(self, fn: Any, *args: Any) -> None:
        self.started.append((fn.__name__, *args))


def dispatcher(tasks: list[_Task], actors: int = 2) -> tuple[_Dispatcher, Nursery]:
    ray = SimpleNamespace(exceptions=SimpleNamespace(RayActorError=ActorDied, ActorUnavailableError=Unavailable))
    state = SimpleNamespace(run_id="r1", run_context=RunContext.start("r1"))
    settings = ActorSettings(mode="mock", free=True)
    d = _Dispatcher(ray, state, SimpleNamespace(name="b"), settings, tasks, lambda: None, {}, 0.0,  # type: ignore[arg-type]
                    [None] * len(tasks), None)
    d.alive = [True] * actors
    nursery = Nursery()
    d.nursery = nursery  # type: ignore[assignment]
    return d, nursery


def task(index: int) -> tuple[_Task, trio.MemoryReceiveChannel[list[Event]]]:
    t = _Task(index, ModelRequest(step=f"b[{index}]", model="claude-sonnet-4-5", messages=()))
    send, receive = trio.open_memory_channel[list[Event]](10)
    t.send = send
    return t, receive


async def test_a_dead_actors_tasks_done_kept_complete_ended_here_started_retried_elsewhere() -> None:
    done_t, done_r = task(0)
    complete_t, complete_r = task(2)
    started_t, started_r = task(4)
    fresh = _Task(6, ModelRequest(step="b[6]", model="claude-sonnet-4-5", messages=()))
    d, nursery = dispatcher([done_t, complete_t, started_t, fresh])
    message = Message(run_id="r1", step="b[2]", seq=4, role="assistant", content=(TextBlock("hi there"),),
                      usage=Usage(input_tokens=3, output_tokens=2), stop_reason="end_turn")
    runs = [
        StepStarted(run_id="r1", step="b[0]", seq=1, provider="mock"),
        Done(run_id="r1", step="b[0]", seq=2, response=Response(text="x")),
        StepStarted(run_id="r1", step="b[2]", seq=1, provider="mock"),
        Delta(run_id="r1", step="b[2]", seq=2, content="hi "),
        Delta(run_id="r1", step="b[2]", seq=3, content="there"),
        message,
        StepStarted(run_id="r1", step="b[4]", seq=1, provider="mock"),
        Delta(run_id="r1", step="b[4]", seq=2, content="half"),
    ]
    for event in runs:
        d.note(d.by_path[event.step], event)
    assert done_t.finished and not complete_t.finished and not started_t.finished

    await d.lost(0, [done_t, complete_t, started_t, fresh], ActorDied("gone"))

    assert d.alive == [False, True]
    # the finished task: nothing more
    assert done_r.statistics().current_buffer_used == 0
    # the complete one ends here, with its message as the response; no second call
    (end,) = complete_r.receive_nowait()
    assert isinstance(end, Done) and (end.seq, end.attempt) == (5, 1)
    assert end.response.text == "hi there" and end.response.messages == (message,)
    assert end.response.usage == Usage(input_tokens=3, output_tokens=2) and end.response.cost_usd == 0.0
    assert complete_t.finished
    # the started one: a Retrying first, then its later events renumbered after it
    (retry,) = started_r.receive_nowait()
    assert isinstance(retry, Retrying)
    assert (retry.seq, retry.attempt, retry.next_attempt) == (3, 1, 2)
    assert retry.output_may_have_started and "actor" in retry.reason
    assert (started_t.seq_offset, started_t.attempt_offset, started_t.redispatched) == (3, 1, True)
    # the started one and the one that had not started go to the live actor, in one job
    assert nursery.started == [("pump", 1, [started_t, fresh])]
    assert not fresh.redispatched
    # the re-dispatched task's new StepStarted is dropped, its events follow the Retrying
    await d.route([
        StepStarted(run_id="r1", step="b[4]", seq=1, provider="mock"),
        (started_t.path, 1, 2, 0.5, "whole", 0),  # a Delta as it travels (pack)
    ])
    after = started_r.receive_nowait()
    assert [(type(e).__name__, e.seq, e.attempt) for e in after] == [("Delta", 5, 2)]


async def test_when_no_actor_is_left_the_tasks_fail() -> None:
    started_t, started_r = task(1)
    d, nursery = dispatcher([started_t], actors=1)
    d.note(started_t, StepStarted(run_id="r1", step="b[1]", seq=1, provider="mock"))
    await d.lost(0, [started_t], Unavailable("gone"))
    (failed,) = started_r.receive_nowait()
    assert type(failed).__name__ == "Failed" and "every actor died" in failed.message
    assert started_t.error is not None and nursery.started == []


async def test_a_job_that_raised_is_not_run_again() -> None:
    started_t, started_r = task(1)
    d, nursery = dispatcher([started_t])
    d.note(started_t, StepStarted(run_id="r1", step="b[1]", seq=1, provider="mock"))
    await d.lost(0, [started_t], RuntimeError("a bug in the job"))
    (failed,) = started_r.receive_nowait()
    assert type(failed).__name__ == "Failed" and "a bug in the job" in failed.message
    assert d.alive == [True, True] and nursery.started == []


def test_the_actors_runtime_env_passes_through_and_carries_the_key_in_live_mode_only(monkeypatch: Any) -> None:
    from sluiceway._ray._cluster import actor_runtime_env

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    given = {"pip": ["x"], "env_vars": {"A": "1", "ANTHROPIC_BASE_URL": "http://mine"}}
    env = actor_runtime_env(given, live=True)
    assert env == {
        "pip": ["x"],
        "env_vars": {"A": "1", "ANTHROPIC_BASE_URL": "http://mine", "ANTHROPIC_API_KEY": "sk-secret"},
    }
    assert given["env_vars"] == {"A": "1", "ANTHROPIC_BASE_URL": "http://mine"}  # the spec's own is untouched
    assert actor_runtime_env(given, live=False) == given  # mock mode: no key travels
    assert actor_runtime_env({}, live=False) == {}


def test_validate_refuses_tools_on_a_ray_batch_naming_the_line(tmp_path: Any) -> None:
    import pytest

    import sluiceway
    from sluiceway import SpecError

    spec = tmp_path / "p.yaml"
    spec.write_text(
        "name: p\n"
        "steps:\n"
        "  - name: b\n"
        "    type: claude_batch\n"
        "    batch_config: {executor: ray}\n"
        "    claude_options: {allowed_tools: [Read]}\n"
        "    items: [a]\n"
        "    prompt: 'say {{item}}'\n"
    )
    with pytest.raises(SpecError) as caught:
        sluiceway.load(spec)
    text = str(caught.value)
    assert "p.yaml:6" in text and "steps[0].claude_options.allowed_tools" in text
    assert "executor: ray runs batch tasks without tools" in text
