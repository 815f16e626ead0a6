"""A standing fault-injection suite (issue 14): the real engine, live mode, the fake Messages API.

Each example runs a real pipeline through ``sluiceway.open_run`` in live mode
(the real anthropic SDK over loopback HTTP) against the fake Messages API, with
drawn faults:

- a ``parallel_claude`` step of up to 200 branches (``fail_fast`` on and off), or
  one ``claude`` step;
- per branch: an error event, a dropped connection, a stall with pings (ended by
  an idle deadline), or a 429/529 before the stream, each at a drawn position;
- the step's handler: it raises or hangs in ``handle`` (bounded by a drawn
  ``handler_timeout_ms``) or in ``aclose``, or is slow; ``on_handler_error``;
- the run cancelled (the reader leaves) after a drawn number of events;
- ``max_starting``, the step's ``stream_buffer_size`` and the run stream's buffer.

After each example it checks the invariants from the events and the files:
one terminal event per started step, last (``check_invariants``, which also
checks that a ``Done``'s text is the deltas of its final attempt), every handler
closed exactly once, a healthy handler's own view valid too, ``result.json``
present and agreeing with the run, each step's ``<step>.txt`` written.

Profiles: the default runs a few small examples (about a minute on loopback,
derandomized: the same examples every time). ``SLUICEWAY_FAULTS=long`` draws
up to 200 branches and runs ``SLUICEWAY_FAULTS_EXAMPLES`` examples (default
5000) from a random seed, for before a release; a failure prints the
``@reproduce_failure`` / seed to replay it. Each bug found becomes an
``@example`` below.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sluiceway.engine import (
    TERMINAL_EVENTS,
    Delta,
    Done,
    Event,
    RunFinished,
    RunStarted,
    StepStarted,
)
from sluiceway.specs import ClaudeOptions, ClaudeStep, ParallelClaudeStep, ParallelTask, Pipeline

import sluiceway
from sluiceway.testing import check_invariants
from sluiceway.testing.fake_api import FakeAPI

LONG = os.environ.get("SLUICEWAY_FAULTS") == "long"
#: The most branches a drawn ``parallel_claude`` step has.
MAX_BRANCHES = 200 if LONG else 12
#: Seconds an ``aclose`` may hang before the engine abandons it (patched down from 5 s: real time).
CLOSE_BOUND = 0.3
#: Real seconds one example may take before it counts as hung.
EXAMPLE_BOUND = 60.0


@attrs.frozen
class Fault:
    """One branch's scripted answer from the fake API."""

    kind: str
    """``ok``, ``error``, ``drop``, ``stall`` or ``status``."""
    after: int = 0
    """Text deltas before the fault (``error``, ``drop``, ``stall``)."""
    deltas: int = 4
    """Text deltas of an ``ok`` answer."""
    code: int = 429
    """``status``: the HTTP status before the stream."""

    def model(self) -> str:
        if self.kind == "ok":
            return f"fake:text?deltas={self.deltas}&delay_ms=2"
        if self.kind == "error":
            return f"fake:error?after={self.after}&type=overloaded_error&delay_ms=2"
        if self.kind == "drop":
            return f"fake:drop?after={self.after}&delay_ms=2"
        if self.kind == "stall":
            return f"fake:stall?after={self.after}&ping_ms=20&stall_s=5&delay_ms=2"
        return f"fake:status?code={self.code}&retry_after=0"


@attrs.frozen
class HandlerPlan:
    """The step's handler, and how it misbehaves."""

    fault: str
    """``none``, ``raise``, ``hang``, ``raise_close``, ``hang_close`` or ``slow``."""
    at: int = 0
    """The event (its index) at which ``handle`` raises or hangs."""
    batch: bool = False
    """Whether it defines ``handle_batch``."""


@attrs.frozen
class Scenario:
    faults: tuple[Fault, ...]
    """One per branch; a single ``claude`` step when ``composite`` is false (one fault)."""
    composite: bool = True
    fail_fast: bool = True
    handler: HandlerPlan = HandlerPlan("none")
    policy: str = "isolate"
    handler_timeout_ms: int = 200
    cancel_after: int | None = None
    """Leave the run (cancelling it) after this many events; ``None``: read to the end."""
    max_starting: int | None = 16
    buffer: int = 64
    """The step's ``stream_buffer_size``."""
    run_buffer: int = 256
    """``open_run``'s ``buffer_size``."""


def _faults() -> st.SearchStrategy[Fault]:
    after = st.integers(0, 6)
    return st.one_of(
        st.builds(Fault, kind=st.just("ok"), deltas=st.integers(0, 12)),
        st.builds(Fault, kind=st.sampled_from(["error", "drop", "stall"]), after=after),
        st.builds(Fault, kind=st.just("status"), code=st.sampled_from([429, 529])),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    composite = draw(st.sampled_from([True, True, True, False]))  # composite steps are the point
    n = draw(st.integers(1, MAX_BRANCHES)) if composite else 1
    # mostly healthy branches: a fault in every branch ends a run before it streams much
    healthy = st.builds(Fault, kind=st.just("ok"), deltas=st.integers(0, 12))
    faults = tuple(draw(st.lists(st.one_of(healthy, healthy, _faults()), min_size=n, max_size=n)))
    handler = draw(
        st.builds(
            HandlerPlan,
            fault=st.sampled_from(["none", "none", "raise", "hang", "raise_close", "hang_close", "slow"]),
            at=st.integers(0, 30),
            batch=st.booleans(),
        )
    )
    return Scenario(
        faults=faults,
        composite=composite,
        fail_fast=draw(st.booleans()),
        handler=handler,
        policy=draw(st.sampled_from(["isolate", "fail"])),
        handler_timeout_ms=draw(st.sampled_from([100, 300])),
        cancel_after=draw(st.none() | st.integers(0, 40 + 6 * n)),
        max_starting=draw(st.sampled_from([None, 1, 4, 16])),
        buffer=draw(st.sampled_from([1, 2, 64])),
        run_buffer=draw(st.sampled_from([1, 16, 256])),
    )


def _handler_class(plan: HandlerPlan) -> type:
    """A fresh handler class for one example (the run builds one instance per step)."""

    class Probe:
        policy = "block"
        instances: list[Probe] = []

        def __init__(self) -> None:
            self.events: list[Event] = []
            self.closed = 0
            self.faulted = False
            self.interrupted = False
            self.handled_after_close = 0
            Probe.instances.append(self)

        async def _one(self, event: Event) -> None:
            if self.closed:
                self.handled_after_close += 1
            if plan.fault in ("raise", "hang") and len(self.events) == plan.at and not self.faulted:
                self.faulted = True
                if plan.fault == "raise":
                    raise RuntimeError("handle failed on purpose")
                await trio.sleep_forever()
            if plan.fault == "slow":
                try:
                    await trio.sleep(0.003)
                except trio.Cancelled:
                    # cut off: by the run's cancellation, or by the stall bound when the event
                    # loop was starved past handler_timeout_ms (real time, a loaded machine)
                    self.interrupted = True
                    raise
            self.events.append(event)

        async def handle(self, event: Event) -> None:
            await self._one(event)

        async def aclose(self) -> None:
            self.closed += 1
            if plan.fault == "raise_close":
                self.faulted = True
                raise RuntimeError("aclose failed on purpose")
            if plan.fault == "hang_close":
                self.faulted = True
                await trio.sleep_forever()

    if plan.batch:

        async def handle_batch(self: Any, events: list[Event]) -> None:
            for event in events:
                await self._one(event)

        Probe.handle_batch = handle_batch  # type: ignore[attr-defined]
    return Probe


def _spec(scenario: Scenario) -> Pipeline:
    common: dict[str, Any] = {
        "stream_buffer_size": scenario.buffer,
        "on_handler_error": scenario.policy,
        "handler_timeout_ms": scenario.handler_timeout_ms,
    }

    def options(fault: Fault) -> ClaudeOptions:
        # a stalled stream ends at its idle deadline (pings are not progress)
        return ClaudeOptions(model=fault.model(), idle_timeout_ms=300 if fault.kind == "stall" else None)

    if not scenario.composite:
        step: Any = ClaudeStep(name="one", prompt="hi", claude_options=options(scenario.faults[0]), **common)
    else:
        tasks = tuple(
            ParallelTask(id=f"t{i}", prompt="hi", claude_options=options(f)) for i, f in enumerate(scenario.faults)
        )
        step = ParallelClaudeStep(
            name="par", prompt="x", parallel_tasks=tasks, fail_fast=scenario.fail_fast, **common
        )
    return Pipeline(name="faults", steps=(step,))


async def _run(scenario: Scenario, api_url: str, out: Path) -> tuple[list[Event], Any, type]:
    probe = _handler_class(scenario.handler)
    events: list[Event] = []
    live: dict[str, Any] = {"max_starting": scenario.max_starting}
    async with sluiceway.open_run(
        _spec(scenario), mode="live", output_dir=out, handlers=[probe], buffer_size=scenario.run_buffer,
        live_options=live,
    ) as run:
        async for event in run.events:
            events.append(event)
            if len(events) == scenario.cancel_after:
                run.cancel()  # the run ends promptly; its stream is read to the end
    result = await run.result()
    return events, result, probe


def _check(scenario: Scenario, events: list[Event], result: Any, probe: type) -> None:
    cancelled = result.status == "cancelled"
    assert cancelled == (scenario.cancel_after is not None and len(events) > scenario.cancel_after) or not cancelled
    # the run's stream: every started step has exactly one terminal event, last; a Done's text
    # is the deltas of its final attempt (invariants 1-3)
    check_invariants(events)
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    started = {e.step for e in events if isinstance(e, StepStarted)}
    ended = Counter(e.step for e in events if isinstance(e, TERMINAL_EVENTS))
    assert all(ended[s] == 1 for s in started), {s: ended[s] for s in started if ended[s] != 1}
    # handlers: each closed exactly once, nothing handed over after its close
    for handler in probe.instances:
        assert handler.closed == 1, handler.closed
        assert handler.handled_after_close == 0
        if not handler.faulted and not handler.interrupted and scenario.handler.fault in ("none", "slow"):
            check_invariants(handler.events)
            if not cancelled:
                _same_view(handler.events, events)
    # the files: result.json agrees with the run; each step that ran has its text file
    run_dir = Path(result.run_dir)
    data = json.loads((run_dir / "result.json").read_text())
    assert data["status"] == result.status
    assert events[-1].status == result.status
    for name, step in data["steps"].items():
        if step["status"] == "skipped":
            continue
        assert (run_dir / f"{name}.txt").exists(), name
    step_name = "par" if scenario.composite else "one"
    if step_name in data["steps"] and data["steps"][step_name]["status"] == "ok":
        done = {e.step: e for e in events if isinstance(e, Done)}
        if scenario.composite:
            assert data["steps"]["par"]["output"] == [
                done[f"par.t{i}"].response.text for i in range(len(scenario.faults))
            ]
        else:
            text = "".join(e.content for e in events if isinstance(e, Delta) and e.step == "one")
            assert data["steps"]["one"]["text"] == text == (run_dir / "one.txt").read_text()
    # a step reported failed because of a handler still keeps what it streamed
    step = result.steps.get(step_name)
    if step is not None and isinstance(step.error, sluiceway.HandlerError) and not scenario.composite:
        done = [e for e in events if isinstance(e, Done) and e.step == step_name]
        if done:
            assert data["steps"][step_name]["text"] == done[0].response.text


def _same_view(seen: list[Event], events: list[Event]) -> None:
    """A healthy handler saw, per step whose ``Done`` it got, exactly the run's events of that step.

    (A step cancelled, also while its terminal went out, may have lost events in
    flight at either consumer: then only its ``StepStarted`` and terminal must match.)"""
    mine: dict[str, list[Event]] = {}
    theirs: dict[str, list[Event]] = {}
    for e in seen:
        mine.setdefault(e.step, []).append(e)
    for e in events:
        if e.step in mine:
            theirs.setdefault(e.step, []).append(e)
    for step, got in mine.items():
        want = theirs[step]
        assert got[0] == want[0] and isinstance(got[0], StepStarted), step
        if isinstance(want[-1], Done) and got[-1] == want[-1]:
            assert got == want, step  # a Done it saw: complete, nothing lost, nothing added
        else:  # cancelled, or cancelled as its Failed / Done went out: each consumer may miss events in flight
            assert got[-1].seq == want[-1].seq, step


@pytest.fixture(scope="module")
def fault_server() -> Any:
    with FakeAPI() as api:
        yield api


def _settings() -> settings:
    if LONG:
        return settings(
            max_examples=int(os.environ.get("SLUICEWAY_FAULTS_EXAMPLES", "5000")),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=False,
            print_blob=True,
        )
    return settings(
        max_examples=int(os.environ.get("SLUICEWAY_FAULTS_EXAMPLES", "40")),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )


@_settings()
@given(scenario=scenarios())
@example(  # issue 14, item 2 in small: fail_fast, one branch drops, a slow handler, a small fan-in
    scenario=Scenario(
        faults=(*[Fault("ok", deltas=12)] * 6, Fault("drop", after=1), *[Fault("ok", deltas=12)] * 5),
        handler=HandlerPlan("slow"),
        buffer=1,
    )
)
@example(  # issue 14, item 4: aclose raises under fail; the response must be kept
    scenario=Scenario(faults=(Fault("ok", deltas=5),), composite=False, handler=HandlerPlan("raise_close"),
                      policy="fail")
)
@example(  # issue 14, item 5: handle never returns; bounded by handler_timeout_ms
    scenario=Scenario(faults=(Fault("ok", deltas=5),) * 3, handler=HandlerPlan("hang", at=3), policy="fail")
)
@example(  # found by the long profile: cancelled just after the last step's Done, RunFinished was lost
    scenario=Scenario(faults=(Fault("ok", deltas=11),), composite=False, cancel_after=15, max_starting=None,
                      buffer=1, run_buffer=1)
)
@example(  # one step: a stall with pings ends at its idle deadline; the run is read to the end
    scenario=Scenario(faults=(Fault("stall", after=2),), composite=False)
)
def test_faults_keep_every_invariant(scenario: Scenario, fault_server: Any, monkeypatch: Any, tmp_path: Path) -> None:
    from sluiceway.engine import _actors

    monkeypatch.setenv("ANTHROPIC_BASE_URL", fault_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-fake")
    monkeypatch.setattr(_actors, "HANDLER_CLOSE_TIMEOUT", CLOSE_BOUND)
    out = tmp_path / f"ex{len(list(tmp_path.iterdir()))}"

    async def main() -> tuple[list[Event], Any, type]:
        with trio.fail_after(EXAMPLE_BOUND):
            return await _run(scenario, fault_server.url, out)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HandlerWarning under isolate: as in production, not an error
        events, result, probe = trio.run(main)
    _check(scenario, events, result, probe)
