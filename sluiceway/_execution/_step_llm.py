"""The ``llm`` step type: any provider, by name or dotted path; tools as for ``claude``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine import Response
from ..specs import LlmStep
from ._modes import new_provider
from ._resume import resumable_model_call
from ._state import ExecutionState

__all__ = ("run_llm_step",)


async def run_llm_step(state: ExecutionState, step: LlmStep, consumers: Sequence[Any]) -> Response:
    """``llm``: ``provider: claude`` uses the run's mode provider; ``mock`` the mock; else a dotted path.

    A provider made here is made once per run and reference, and closed at the run's end.
    Its response is saved and resumed as a ``claude`` step's.
    """
    if step.provider in ("claude", "anthropic"):
        provider = state.provider
    elif step.provider in state.extra_providers:
        provider = state.extra_providers[step.provider]
    else:
        provider = new_provider(step.provider)
        state.extra_providers[step.provider] = provider
    return await resumable_model_call(state, step, consumers, provider)
