"""The ``python`` step type: a user callable, with earlier results and live events.

The callable gets a ``StepContext``; its return value is the step's output.
With ``input_stream`` it also gets an earlier step's events as they happen.
The step makes its own events (``StepStarted``, one ``Delta`` with its text,
one terminal event) for its handlers and the run's event stream.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from .._registry import resolve_callable
from ..engine import Cancelled, Delta, Done, Event, Failed, Metrics, Response, StepStarted
from ..specs import PythonStep
from ._model_call import handler_timeout
from ._state import CLOSE_TIMEOUT, ExecutionState

__all__ = ("StepContext", "run_python_step", "stream_python_step")


@attrs.define(kw_only=True)
class StepContext:
    """What a ``python`` step's callable receives.

    ``steps[name]`` is each finished step's ``Response`` (``.text``, ``.output``);
    ``events`` is a receive channel of the ``input_stream`` step's live events
    (``None`` without ``input_stream``); it ends after that step's terminal event.
    """

    run_id: str
    """The run's id."""
    step: str
    """This step's name."""
    steps: Mapping[str, Response]
    """Finished steps' responses, by name."""
    vars: Mapping[str, Any]
    """The pipeline's variables (after ``--set``)."""
    args: Mapping[str, Any]
    """The step's ``args``."""
    events: trio.MemoryReceiveChannel[Event] | None = None
    """The ``input_stream`` step's events, live."""
    workspace: Path = Path(".")
    """The run's workspace."""
    output_dir: Path = Path(".")
    """The pipeline's output folder."""


async def run_python_step(
    state: ExecutionState,
    step: PythonStep,
    consumers: Sequence[Any],
    events: trio.MemoryReceiveChannel[Event] | None = None,
) -> Response:
    """``python``: call ``callable(ctx)`` (sync or async); its return value is the output.

    A sync callable runs in the trio thread (keep it short). The return value
    becomes ``Response.output``; ``Response.text`` is it as text (JSON for
    non-strings, ``""`` for ``None``).
    """
    fn = resolve_callable(step.callable)  # found (and imported) by prepare's check
    ctx = StepContext(
        run_id=state.run_id,
        step=step.name,
        steps=dict(state.responses),
        vars=state.variables,
        args=dict(step.args),
        events=events,
        workspace=state.workspace,
        output_dir=state.out_root,
    )
    started = trio.current_time()
    value = fn(ctx)
    if inspect.isawaitable(value):
        value = await value
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return Response(
        text=text,
        output=value,
        model=None,
        metrics=Metrics(duration=trio.current_time() - started),
    )


async def stream_python_step(
    state: ExecutionState,
    step: PythonStep,
    handlers: Sequence[Any],
    events: trio.MemoryReceiveChannel[Event] | None,
) -> Response:
    """Run a python step, with ``StepStarted`` and terminal events to the run stream and *handlers*.

    Closes: every handler (shielded, bounded), and *events* when given (which
    tells the upstream nobody listens any more). Cancelled: ``Cancelled`` is
    sent (bounded), then the cancellation propagates. A handler that fails is
    warned about and otherwise ignored.
    """
    seq = 0
    bound = handler_timeout(state, step)

    async def emit(event_type: type[Event], **fields: Any) -> None:
        nonlocal seq
        seq += 1
        event = event_type(run_id=state.run_id, step=step.name, seq=seq, at=state.now(), **fields)
        for handler in handlers:
            try:
                with trio.move_on_after(math.inf if bound is None else bound) as scope:
                    await handler.handle(event)
                if scope.cancelled_caught:
                    raise TimeoutError(f"handle did not return within {bound:g} s")
            except Exception as exc:  # python steps' handlers: isolated, warned
                warnings.warn(f"handler {type(handler).__name__} failed: {exc}", RuntimeWarning, stacklevel=1)
        await state.emit(event)

    try:
        await emit(StepStarted, provider="python", model=None, step_type="python")
        try:
            if events is not None:
                with events:  # closing it tells the upstream nobody listens any more
                    response = await run_python_step(state, step, (), events)
            else:
                response = await run_python_step(state, step, ())
        except Exception as exc:
            with trio.CancelScope(shield=True):
                await emit(Failed, error=exc, message=str(exc))
            raise
        except BaseException:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await emit(Cancelled)
            raise
        if response.text:
            # the text as one delta, so deltas concatenate to Done.response.text (invariant 2)
            await emit(Delta, content=response.text, index=0)
            response = attrs.evolve(response, metrics=attrs.evolve(response.metrics, delta_count=1))
        await emit(Done, response=response)
        return response
    finally:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            for handler in handlers:
                try:
                    await handler.aclose()
                except Exception as exc:
                    warnings.warn(f"handler {type(handler).__name__} failed to close: {exc}", RuntimeWarning, stacklevel=1)
