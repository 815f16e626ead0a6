"""The ``claude_robust`` step type: retries from ``retry_config``, under one budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import StepError
from ..engine import Response, RetryPolicy
from ..specs import ClaudeOptions, ClaudeRobustStep
from ._model_call import step_options, stream_model_call
from ._state import ExecutionState

__all__ = ("retry_policy", "run_robust_step")


def retry_policy(step: ClaudeRobustStep, opts: ClaudeOptions) -> RetryPolicy:
    """The ``RetryPolicy`` of a ``claude_robust`` step (``fallback_model`` also from its options)."""
    config = step.retry_config
    try:
        return RetryPolicy.from_config(
            max_retries=config.max_retries,
            backoff=config.backoff,
            base_delay_ms=config.base_delay_ms,
            max_delay_ms=config.max_delay_ms,
            retry_on=config.retry_on,
            fallback_model=config.fallback_model or opts.fallback_model,
        )
    except ValueError as exc:
        raise StepError(f"retry_config: {exc}", step=step.name) from exc


async def run_robust_step(state: ExecutionState, step: ClaudeRobustStep, consumers: Sequence[Any]) -> Response:
    """``claude_robust``: retries under one budget; the final response is the last attempt's."""
    retry = retry_policy(step, step_options(state, step))
    return await stream_model_call(state, step, consumers, state.provider, retry=retry)
