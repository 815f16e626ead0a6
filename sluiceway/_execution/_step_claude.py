"""The ``claude`` and ``claude_smart`` step types: one streamed step with the tool-use loop.

``claude_smart`` differs only in its options: its preset's under the step's own
(``step_options`` applies it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine import Response
from ._resume import resumable_model_call
from ._state import ExecutionState

__all__ = ("run_claude_step",)


async def run_claude_step(state: ExecutionState, step: Any, consumers: Sequence[Any]) -> Response:
    """``claude`` and ``claude_smart``: one streamed step with the tool-use loop.

    Its response is saved once done (``steps/<STEP>.json``); a resumed run replays it
    when its inputs hash the same (``_resume``).
    """
    return await resumable_model_call(state, step, consumers, state.provider)
