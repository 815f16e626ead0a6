"""What the composite step types (``claude_batch``, ``parallel_claude``) share.

Their sub-steps stream through one ``stream_group``; the step's response sums
the sub-steps' usage and cost, and its ``output`` lists each one's result in
task (or branch) order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio

from .._errors import StepError
from ..engine import DEFAULT_BUFFER_SIZE, ChannelConsumer, Metrics, Response, Usage
from ..engine._pricing import add_cost
from ._model_call import DEFAULT_MODEL, handler_error_policy, handler_timeout, step_options
from ._state import ExecutionState

__all__ = ("SubConsumer", "batch_result", "composite_response", "group_kwargs", "result_of")

#: ``stream_group``'s maker of one sub-step's consumer.
SubConsumer = Callable[[], ChannelConsumer]


def composite_response(outputs: list[Any], responses: Sequence[Response | None], started: float) -> Response:
    """The step's response: *outputs*, and the sub-steps' usage and cost summed."""
    usage = superseded = Usage()
    cost: float | None = 0.0
    superseded_cost: float | None = 0.0
    for response in responses:
        if response is None:
            continue
        usage = usage + response.usage
        cost = add_cost(cost, response.cost_usd)
        superseded = superseded + response.superseded_usage
        superseded_cost = add_cost(superseded_cost, response.superseded_cost_usd)
    models = {r.model for r in responses if r is not None and r.model}
    return Response(
        text="",  # the sub-steps streamed the text; ``output`` holds each one's
        output=outputs,
        usage=usage,
        cost_usd=cost,
        superseded_usage=superseded,
        superseded_cost_usd=superseded_cost,
        model=models.pop() if len(models) == 1 else None,
        metrics=Metrics(duration=trio.current_time() - started),
    )


def batch_result(
    step: str, responses: Sequence[Response | None], errors: dict[int, BaseException], started: float
) -> Response:
    """A batch's response, outputs in task order; when tasks failed, a ``StepError`` naming them all.

    The error carries the others' results as its ``partial`` response; its cause is the first
    failed task's error.
    """
    outputs = [None if r is None else result_of(r) for r in responses]
    response = composite_response(outputs, responses, started)
    if errors:
        listed = "; ".join(f"[{i}] {errors[i]}" for i in sorted(errors))
        error = StepError(f"{len(errors)} of {len(responses)} tasks failed: {listed}", step=step)
        error.__cause__ = errors[min(errors)]
        error.partial = response  # type: ignore[attr-defined]  # the partial response rides on any exception
        raise error
    return response


def result_of(response: Response) -> Any:
    """A sub-step's result: its ``output`` when it has one, else its text."""
    return response.output if response.output is not None else response.text


def group_kwargs(state: ExecutionState, step: Any) -> dict[str, Any]:
    """``stream_group``'s arguments that come from the step and the run."""
    return {
        "run": state.run_context,
        "path": step.name,
        "step_type": step.type,
        "provider": state.provider.name,
        "model": step_options(state, step).model or DEFAULT_MODEL,
        "buffer_size": step.stream_buffer_size or state.spec.defaults.stream_buffer_size
        or DEFAULT_BUFFER_SIZE,
        "on_handler_error": handler_error_policy(state, step),
        "handler_timeout": handler_timeout(state, step),
    }
