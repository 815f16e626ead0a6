"""The ``claude_batch`` step type: many prompts as sub-steps ``NAME[i]``, ``max_parallel`` at once.

Each task's response is saved as it finishes (``batch/<STEP>/<i>.json`` in the
run's folder, see ``_resume``); a resumed run replays the tasks whose saved
response has the same input hash, and calls only the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import trio

from .._errors import ProviderTimeoutError, StepError
from ..engine import Response, stream_group
from ..specs import ClaudeBatchStep
from ._composite import SubConsumer, batch_result, group_kwargs
from ._model_call import stream_model_call
from ._resume import PlannedCall, plan_calls, replay_call
from ._state import ExecutionState

__all__ = ("batch_prompts", "run_batch_step")


def batch_prompts(step: ClaudeBatchStep) -> list[tuple[Any, dict[str, Any] | None]]:
    """Each task's (prompt, extra template values): ``tasks``, or ``items`` through ``prompt``."""
    if step.tasks:
        return [(task.prompt, {"index": i}) for i, task in enumerate(step.tasks)]
    if step.items:
        if step.prompt is None:
            raise StepError("items need a prompt template ({{item}}, {{index}})", step=step.name)
        return [(step.prompt, {"item": item, "index": i}) for i, item in enumerate(step.items)]
    raise StepError("a claude_batch step needs tasks or items", step=step.name)


async def run_batch_step(state: ExecutionState, step: ClaudeBatchStep, consumers: Sequence[Any]) -> Response:
    """``claude_batch``: sub-steps ``NAME[i]``, ``max_parallel`` at once; outputs in task order.

    Every task runs to its end (a failed one does not stop the others); the
    step fails when any task failed, naming them, with the others' results in
    its partial response.
    """
    prompts = batch_prompts(step)
    config = step.batch_config
    if (state.options.executor or config.executor) == "ray":  # docs/scale_out.md
        from ._step_batch_ray import run_ray_batch

        return await run_ray_batch(state, step, consumers, prompts)
    if config.max_parallel < 1:
        raise StepError(f"batch_config.max_parallel must be >= 1, got {config.max_parallel}", step=step.name)
    limiter = trio.CapacityLimiter(config.max_parallel)
    started = trio.current_time()
    responses: list[Response | None] = [None] * len(prompts)
    errors: dict[int, BaseException] = {}
    store = state.resume.store(step.name, batch=True)

    async def task(index: int, call: PlannedCall, sub: SubConsumer) -> None:
        path = f"{step.name}[{index}]"
        async with limiter:
            try:
                timeout = config.timeout_per_task
                try:
                    with trio.fail_after(math.inf if timeout is None else timeout):
                        responses[index] = await stream_model_call(
                            state, step, [sub()], state.provider, path=path, rendered=call.text
                        )
                except trio.TooSlowError as exc:
                    raise ProviderTimeoutError(
                        f"task {index} took longer than timeout_per_task={timeout}s", step=path
                    ) from exc
            except Exception as exc:  # one task's failure: the others go on
                errors[index] = exc
                return
        response = responses[index]
        assert response is not None
        store.save(index, call.input_hash, response, provider=call.provider)  # saved as soon as it is done

    async def replay(index: int, call: PlannedCall, sub: SubConsumer) -> None:
        async with limiter:
            try:
                responses[index] = await replay_call(state, step, [sub()], store, call, path=f"{step.name}[{index}]")
            except Exception as exc:
                errors[index] = exc

    async def body(sub: SubConsumer) -> Response:
        # each task's rendered prompt and input hash, and its saved response when a resumed run has one
        calls = await plan_calls(state, step, state.provider, store, prompts)
        async with trio.open_nursery() as nursery:
            for index, call in enumerate(calls):
                if isinstance(call, Exception):  # its prompt cannot be rendered: it fails alone
                    errors[index] = call
                else:
                    nursery.start_soon(task if call.saved is None else replay, index, call, sub)
        return batch_result(step.name, responses, errors, started)

    return await stream_group(
        consumers=consumers, body=body, concurrency=min(config.max_parallel, len(prompts)), tasks=len(prompts),
        **group_kwargs(state, step),
    )
