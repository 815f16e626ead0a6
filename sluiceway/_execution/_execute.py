"""``execute``: run a spec to its end, from preparation to ``result.json`` and ``RunFinished``."""

from __future__ import annotations

import time
import warnings
from typing import Final

import trio

from .._result import RunResult, result_to_json
from ..engine import Event, RunContext, RunFinished, RunStarted
from ..specs import Pipeline
from ..tools import SandboxWarning
from ._files import resolve_dirs, write_run_files
from ._modes import DEFAULT_OPTIONS, RunOptions, open_mode_provider
from ._prepare import prepare
from ._resume import ResumeError, ResumeState, check_run_dir, write_run_marker
from ._schedule import Scheduler, StepFailed
from ._state import CLOSE_TIMEOUT, ExecutionState, new_run_id

#: The warning, on every run, about each step that runs Bash with ``sandbox: none``.
UNSANDBOXED: Final = (
    "run {run_id}: step {path!r} runs Bash without a sandbox (claude_options.sandbox: none): "
    "its commands run as this process does, and can read and write its files, reach the network, "
    "and read its environment (the API key included) through /proc"
)

__all__ = ("execute",)


async def execute(
    spec: Pipeline,
    options: RunOptions = DEFAULT_OPTIONS,
    *,
    send_events: trio.MemorySendChannel[Event] | None = None,
    task_status: trio.TaskStatus[RunResult] = trio.TASK_STATUS_IGNORED,
) -> RunResult:
    """Run *spec* to the end and return its ``RunResult`` (never raises for a failed step).

    Steps run in order; a failed step stops the run (``status="failed"``).
    ``send_events``, when given, receives every event (``RunStarted`` ...
    ``RunFinished``) and is closed at the end; a full channel blocks the run
    (backpressure). ``task_status.started(result)`` hands over the live ``RunResult`` (filled in as
    the run goes) once the run has begun.

    Closes: the run's provider(s), every handler (by the engine), ``send_events``.
    Cancelled (or interrupted): running steps get their ``Cancelled`` terminal
    event, handlers are closed, ``result.json`` is written with
    ``status="cancelled"``, then the cancellation propagates.

    Raises:
        SpecError: the spec fails the pre-run checks (conditions, handlers, callables).
        ModeUnavailableError: the mode's provider is not available.
    """
    try:
        state = await _start(spec, options, send_events)
    except BaseException:
        if send_events is not None:
            send_events.close()
        raise
    result = state.result
    finished = False
    try:
        task_status.started(result)
        await state.emit(
            RunStarted(
                run_id=state.run_id,
                step="",
                at=0.0,
                pipeline=spec.name,
                steps=tuple(s.name for s in spec.steps),
                started_wall=state.started_wall,
            )
        )
        try:
            await Scheduler(state).run_all()
            result.status = "ok"
        except StepFailed as failure:
            result.status = "failed"
            result.failed_step = failure.name
            result.error = failure.error
        finished = True
    except Exception as exc:  # a bug, not a step failure: record it, then let it propagate
        result.status = "failed"
        result.error = exc
        raise
    finally:
        try:
            _record_end(state, finished)
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await _close_providers(state)
            if send_events is not None and not finished:
                with send_events, trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await state.emit(_run_finished(state))
    if send_events is not None:
        with send_events:  # the normal end: RunFinished under backpressure like any event
            try:
                await state.emit(_run_finished(state))
            except trio.Cancelled:  # cancelled after the last step ended: the stream still ends with it
                with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await state.emit(_run_finished(state))  # (a cancelled send sent nothing)
                raise
    return result


async def _start(
    spec: Pipeline, options: RunOptions, send_events: trio.MemorySendChannel[Event] | None
) -> ExecutionState:
    """Check the spec, open the mode's provider and the run's folder: the run's state."""
    prepared = prepare(spec, options)
    previous = None if options.resume is None else check_run_dir(spec, options.resume)
    workspace, out_root = resolve_dirs(spec, options)
    run_id = options.run_id or new_run_id()
    for path in prepared.unsandboxed:  # every run, and the run id keeps Python from deduplicating
        warnings.warn(SandboxWarning(UNSANDBOXED.format(run_id=run_id, path=path)), stacklevel=1)
    run_dir = out_root / run_id
    if previous is not None and previous == run_dir.resolve():
        raise ResumeError(f"--resume {str(previous)!r}: a resumed run needs a new run id, not the resumed run's")
    provider = open_mode_provider(spec, options)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await provider.aclose()
        raise
    started_wall = time.time()
    origin = trio.current_time()
    state = ExecutionState(
        spec=spec,
        options=options,
        prepared=prepared,
        run_id=run_id,
        run_context=RunContext(run_id=run_id, origin=origin, events=send_events),
        provider=provider,
        workspace=workspace,
        out_root=out_root,
        run_dir=run_dir,
        variables={**spec.variables, **dict(options.variables)},
        result=RunResult(
            run_id=run_id, pipeline=spec.name, run_dir=run_dir, started_at=started_wall, resumed_from=previous
        ),
        started_wall=started_wall,
        timestamp=time.strftime("%Y%m%dT%H%M%S", time.localtime(started_wall)),
        send_events=send_events,
        resume=ResumeState(run_dir=run_dir, previous=previous),
    )
    try:
        write_run_marker(state)
    except OSError:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await provider.aclose()
        raise
    return state


def _record_end(state: ExecutionState, finished: bool) -> None:
    """Record how the run ended (a cancellation when it did not finish) and write its files."""
    result = state.result
    if not finished and result.error is None:
        result.status = "cancelled"
        for name, step in result.steps.items():
            if step.status == "cancelled" and result.failed_step is None:
                result.failed_step = name
    result.duration = state.now()
    result.requests = state.requests
    result.reused = state.resume.reuse
    result.reused_by_step = state.resume.by_step
    write_run_files(state)


async def _close_providers(state: ExecutionState) -> None:
    """Close every provider the run opened; a failure to close is warned about, not raised."""
    for owned in (*state.extra_providers.values(), state.provider):
        try:
            await owned.aclose()
        except Exception as exc:  # a failure to close is not a failure of the run
            warnings.warn(f"provider {owned.name!r} failed to close: {exc}", RuntimeWarning, stacklevel=1)


def _run_finished(state: ExecutionState) -> RunFinished:
    result = state.result
    return RunFinished(
        run_id=result.run_id,
        step="",
        at=state.now(),
        status=result.status,
        summary=result_to_json(result)["steps"],
    )
