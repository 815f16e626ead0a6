"""The ``parallel_claude`` step type: branches ``NAME.ID`` in a child nursery, ``fail_fast``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from .._errors import StepError
from ..engine import Response, stream_group
from ..specs import ParallelClaudeStep
from ._composite import SubConsumer, composite_response, group_kwargs, result_of
from ._model_call import merge_options, stream_model_call
from ._state import ExecutionState

__all__ = ("run_parallel_step",)


async def run_parallel_step(state: ExecutionState, step: ParallelClaudeStep, consumers: Sequence[Any]) -> Response:
    """``parallel_claude``: branches ``NAME.ID`` in a child nursery; outputs in branch order.

    ``fail_fast`` (the default): the first failure cancels the other branches
    (each still ends with exactly one ``Cancelled``) and fails the step with
    that error. Without it every branch finishes; the step fails when any did.
    """
    if not step.parallel_tasks:
        raise StepError("a parallel_claude step needs parallel_tasks", step=step.name)
    ids = [t.id for t in step.parallel_tasks]
    if len(set(ids)) != len(ids):
        raise StepError(f"parallel_tasks ids must be unique, got {ids}", step=step.name)
    started = trio.current_time()
    responses: list[Response | None] = [None] * len(ids)
    errors: dict[int, BaseException] = {}

    async def body(sub: SubConsumer) -> Response:
        async with trio.open_nursery() as nursery:

            async def branch(index: int) -> None:
                task = step.parallel_tasks[index]
                try:
                    responses[index] = await stream_model_call(
                        state, step, [sub()], state.provider,
                        path=f"{step.name}.{task.id}",
                        prompt=task.prompt,
                        options=merge_options(step.claude_options, task.claude_options),
                        mock=task.mock,
                    )
                except Exception as exc:
                    errors[index] = exc
                    if step.fail_fast:
                        nursery.cancel_scope.cancel()

            for index in range(len(ids)):
                nursery.start_soon(branch, index)
        outputs = [None if r is None else result_of(r) for r in responses]
        response = composite_response(outputs, responses, started)
        if errors:
            first = min(errors)  # fail_fast: only the first failure is recorded (the others were cancelled)
            listed = "; ".join(f"{ids[i]}: {errors[i]}" for i in sorted(errors))
            error = StepError(f"branch {listed}" if len(errors) == 1 else f"branches failed: {listed}", step=step.name)
            error.__cause__ = errors[first]
            error.partial = response  # type: ignore[attr-defined]  # the partial response rides on any exception
            raise error
        return response

    return await stream_group(
        consumers=consumers, body=body, concurrency=len(ids), tasks=len(ids), **group_kwargs(state, step)
    )
