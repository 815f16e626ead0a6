"""``executor: ray`` on a real local Ray cluster (one per module), against the fake Messages API.

The cluster starts once for the module (seconds, and about a gigabyte); each
run joins it, makes its own actors and kills them at its end. The fake server
runs in this process (a thread) on loopback; the actors reach it through the
runtime environment's ``ANTHROPIC_BASE_URL``, as they would reach the API.
"""

from __future__ import annotations

import bisect
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from sluiceway.engine import TERMINAL_EVENTS, Delta, Done, Event, Retrying, StepStarted
from sluiceway.handlers._file import event_from_dict

import sluiceway
from sluiceway.testing import check_invariants
from sluiceway.testing.fake_api import FakeAPI

ray = pytest.importorskip("ray", reason="executor: ray needs Ray: pip install 'sluiceway[ray]'")

#: The actors' process title (Ray sets it to ray::<class>[.<method>]).
ACTOR_TITLE = "ray::BatchActor"
SLUICEWAY = str(Path(sys.executable).parent / "sluiceway")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local cluster for the module; its address, for runs in other processes to join."""
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def live_env(fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    fake_api.reset()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-fake-ray")
    return fake_api


def batch_spec(tmp_path: Path, count: int, model: str, **config: Any) -> Path:
    config = {"executor": "ray", "actors": 2, "max_parallel": 8, **config}
    path = tmp_path / "batch.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "scale",
                "output_dir": str(tmp_path / "out"),
                "steps": [
                    {
                        "name": "batch",
                        "type": "claude_batch",
                        "claude_options": {"model": model, "max_tokens": 64},
                        "batch_config": config,
                        "items": [f"w{i}" for i in range(count)],
                        "prompt": "task {{index}} says {{item}}",
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    return path


def actor_pids() -> set[int]:
    """The processes of Ray actors of ours on this machine (their title, from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(ACTOR_TITLE.encode()):
            found.add(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """The pids of *pids* still running after at most *timeout* seconds."""
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if _running(p)}
        time.sleep(0.05)
    return alive


def by_step(events: list[Event]) -> dict[str, list[Event]]:
    steps: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        steps[event.step].append(event)
    return steps


async def test_500_tasks_every_text_exact_and_one_terminal_each(
    ray_cluster: str, live_env: FakeAPI, tmp_path: Path
) -> None:
    count = 500
    spec = batch_spec(tmp_path, count, "fake:text?echo=1&delay_ms=2", max_parallel=50)
    seen: list[Event] = []
    before = actor_pids()
    with trio.fail_after(120):
        result = await sluiceway.run(spec, mode="live", on_event=seen.append)
    assert result.status == "ok", result.error
    expected = [f"task {i} says w{i}" for i in range(count)]
    assert result.steps["batch"].output == expected
    check_invariants(seen)
    steps = by_step(seen)
    assert sorted(steps) == sorted(["batch", *(f"batch[{i}]" for i in range(count))])
    for i in range(count):
        events = steps[f"batch[{i}]"]
        assert isinstance(events[0], StepStarted)
        assert sum(isinstance(e, TERMINAL_EVENTS) for e in events) == 1
        done = events[-1]
        assert isinstance(done, Done)
        assert "".join(e.content for e in events if isinstance(e, Delta)) == expected[i] == done.response.text
        assert {e.run_id for e in events} == {result.run_id}
    assert live_env.stats()["requests"] == count
    # every event's time is on the driver's clock: within the run, in order per sub-step
    assert all(0 <= e.at <= result.duration + 0.5 for e in seen)
    # the key reached the actors (the fake server saw it) only through their runtime environment
    assert all("sk-fake-ray" in json.dumps(r["headers"]) for r in live_env.requests_seen)
    assert "sk-fake-ray" not in repr(seen)
    assert "sk-fake-ray" not in (Path(result.run_dir) / "result.json").read_text(encoding="utf-8")
    # the run's actors are gone with it
    assert wait_gone(actor_pids() - before, 10) == set()


async def test_an_actor_killed_mid_batch_its_tasks_finish_elsewhere_each_after_a_retrying(
    ray_cluster: str, live_env: FakeAPI, tmp_path: Path
) -> None:
    count = 40
    spec = batch_spec(tmp_path, count, "fake:text?echo=1&delay_ms=40", max_parallel=10)
    seen: list[Event] = []
    killed_at: list[int] = []
    run_ids: list[str] = []

    def on_event(event: Event) -> None:
        seen.append(event)
        run_ids.append(event.run_id)
        # actor 0 streams the even tasks: kill it once some of them have output
        if not killed_at and isinstance(event, Delta) and int(event.step[6:-1]) % 2 == 0:
            evens = sum(isinstance(e, Delta) and int(e.step[6:-1]) % 2 == 0 for e in seen)
            if evens >= 20:
                actor = ray.get_actor(f"{event.run_id}/batch/0", namespace="sluiceway")
                ray.kill(actor, no_restart=True)
                killed_at.append(len(seen))

    with trio.fail_after(120):
        result = await sluiceway.run(spec, mode="live", on_event=on_event)
    assert killed_at, "the actor was never killed"
    assert result.status == "ok", result.error
    expected = [f"task {i} says w{i}" for i in range(count)]
    assert result.steps["batch"].output == expected
    check_invariants(seen)  # seq increasing, one terminal last, Done text = the kept attempt's deltas
    steps = by_step(seen)
    retried = []
    for i in range(count):
        events = steps[f"batch[{i}]"]
        retries = [e for e in events if isinstance(e, Retrying)]
        assert sum(isinstance(e, TERMINAL_EVENTS) for e in events) == 1
        assert sum(isinstance(e, StepStarted) for e in events) == 1
        if i % 2:
            assert retries == []  # actor 1's tasks are untouched
            continue
        if not retries:
            continue  # finished before the kill, or not started by then
        retried.append(i)
        (retry,) = retries
        assert "actor" in retry.reason and retry.next_attempt == 2 and retry.delay == 0.0
        before = events[: events.index(retry)]
        assert retry.output_may_have_started == any(isinstance(e, Delta) for e in before)
        after = events[events.index(retry) + 1 :]
        assert after and all(e.attempt == 2 for e in after)
        assert "".join(e.content for e in after if isinstance(e, Delta)) == expected[i]
    assert retried, "no task was running on the killed actor"
    assert any(steps[f"batch[{i}]"][1:2] and isinstance(steps[f"batch[{i}]"][1], Delta) for i in retried)
    # each re-dispatched task was asked again: one more request each, no more
    assert live_env.stats()["requests"] == count + len(retried)


async def test_a_slow_driver_handler_holds_the_actors_back(
    ray_cluster: str, live_env: FakeAPI, tmp_path: Path
) -> None:
    """Backpressure reaches the actors: no event waits for the handler behind more than a bounded number.

    Each event's ``at`` is when its actor made it (on the driver's clock). The
    events the handler took between an event's making and its own turn were in
    flight ahead of it; with the actors held back that count stays near the sum
    of the buffers, far below the run's events (which it would approach if the
    actors ran ahead and the driver queued their output).
    """
    count, deltas = 40, 400
    spec = batch_spec(tmp_path, count, f"fake:text?deltas={deltas}", max_parallel=4)
    handled: list[float] = []
    made: list[float] = []
    origin: list[float] = []

    def slow(event: Event) -> None:
        if not origin:
            origin.append(time.time() - event.at)  # the run's start, wall clock
        time.sleep(0.0002)  # a handler that holds the driver's loop (the slowest kind)
        handled.append(time.time() - origin[0])
        made.append(event.at)

    with trio.fail_after(120):
        result = await sluiceway.run(spec, mode="live", on_event=slow)
    assert result.status == "ok", result.error
    total = len(handled)
    assert total > count * deltas
    ahead = [bisect.bisect_left(handled, at) for at in made]  # events handled before each was made
    in_flight = max(i - a for i, a in enumerate(ahead))
    # the buffers: 2 actors x (2 batches ahead + 1 in the pump + 1 in the relays + 1 filling) x 128 events, the
    # actors' channels, the relays' and the fan-in's; the run has over five times that many
    assert in_flight < 3000, in_flight
    assert total > 16_000


def test_ctrl_c_mid_batch_ends_fast_every_sub_step_terminated_no_worker_left(
    ray_cluster: str, live_env: FakeAPI, tmp_path: Path
) -> None:
    count = 30
    spec = batch_spec(tmp_path, count, "fake:text?deltas=400&delay_ms=50", max_parallel=6,
                      ray_address=ray_cluster)
    data = json.loads(spec.read_text(encoding="utf-8"))
    data["steps"][0]["stream_handler"] = "file"
    data["steps"][0]["stream_handler_opts"] = {"file_path": str(tmp_path / "events.jsonl"), "format": "jsonl"}
    spec.write_text(json.dumps(data), encoding="utf-8")
    before = actor_pids()
    env = {**os.environ, "ANTHROPIC_BASE_URL": live_env.url, "ANTHROPIC_API_KEY": "sk-fake-ray"}
    proc = subprocess.Popen(
        [SLUICEWAY, "run", str(spec), "--mode", "live", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert live_env.wait_for("requests", 12, timeout=60), proc.poll()
        time.sleep(0.5)  # deltas flowing on both actors
        ours = actor_pids() - before
        assert len(ours) == 2, ours
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert took < 5, took
    events = [event_from_dict(json.loads(line)) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    check_invariants(events)
    steps = by_step(events)
    started = [s for s, evs in steps.items() if s != "batch"]
    assert len(started) >= 12
    for step, evs in steps.items():
        terminals = [e for e in evs if isinstance(e, TERMINAL_EVENTS)]
        assert len(terminals) == 1 and terminals[0] is evs[-1], step
        assert type(terminals[0]).__name__ == "Cancelled", step
    result = json.loads(next((tmp_path / "out").glob("*/result.json")).read_text())
    assert result["status"] == "cancelled"
    assert wait_gone(ours, 5) == set()
    # no stream is left open at the fake server: the actors' calls were cancelled too
    assert live_env.wait_for("disconnects", len(started), timeout=5), live_env.stats()


def test_ray_missing_fails_before_the_run_saying_how_to_install(tmp_path: Path) -> None:
    spec = batch_spec(tmp_path, 2, "fake:text")
    blocker = tmp_path / "noray"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('no ray here')\n")
    # find_spec finds this ray.py, so hide it as a missing package instead: a meta path finder
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoRay:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'ray'\")\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NoRay())\n"
    )
    (blocker / "ray.py").unlink()
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    proc = subprocess.run(
        [SLUICEWAY, "run", str(spec)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "pip install 'sluiceway[ray]'" in proc.stderr
    assert "batch_config.executor" in proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*/result.json"))


def test_mock_mode_on_ray_gives_what_a_local_batch_gives(ray_cluster: str, tmp_path: Path) -> None:
    spec = batch_spec(tmp_path, 12, "claude-sonnet-4-5")
    ray_result = sluiceway.run_sync(spec, output_dir=tmp_path / "ray")
    local = json.loads(spec.read_text(encoding="utf-8"))
    local["steps"][0]["batch_config"] = {"max_parallel": 8}
    spec.write_text(json.dumps(local), encoding="utf-8")
    local_result = sluiceway.run_sync(spec, output_dir=tmp_path / "local")
    assert ray_result.status == local_result.status == "ok"
    assert ray_result.steps["batch"].output == local_result.steps["batch"].output
    assert len(set(ray_result.steps["batch"].output)) == 12


async def test_resume_on_ray_calls_only_the_missing_tasks_and_ends_as_an_uninterrupted_run(
    ray_cluster: str, live_env: FakeAPI, tmp_path: Path
) -> None:
    count = 30
    spec = batch_spec(tmp_path, count, "fake:text?echo=1", max_parallel=8)
    with trio.fail_after(120):
        first = await sluiceway.run(spec, mode="live")
    assert first.status == "ok" and live_env.stats()["requests"] == count
    saved = first.run_dir / "batch" / "batch"
    assert len(list(saved.iterdir())) == count  # each task's response, saved as it ended
    missing = [3, 4, 17, 29]  # a run stopped before these ended
    for i in missing:
        (saved / f"{i}.json").unlink()
    live_env.reset()
    seen: list[Event] = []
    with trio.fail_after(120):
        second = await sluiceway.run(spec, mode="live", resume=first.run_dir, on_event=seen.append)
    assert second.status == "ok", second.error
    assert live_env.stats()["requests"] == len(missing)  # the fake server's count: only those
    assert second.steps["batch"].output == first.steps["batch"].output
    assert second.requests == len(missing)
    check_invariants(seen)
    steps = by_step(seen)
    assert all(sum(isinstance(e, TERMINAL_EVENTS) for e in steps[f"batch[{i}]"]) == 1 for i in range(count))
    assert len(list((second.run_dir / "batch" / "batch").iterdir())) == count
