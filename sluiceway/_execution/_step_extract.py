"""The ``claude_extract`` step type: structured output from the streamed text.

``extraction_config`` is applied to the text before ``Done``; the value is the
response's ``output``, and a failed extraction fails the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from .._errors import StepError
from ..engine import Response
from ..specs import ClaudeExtractStep
from ..tools import ExtractError, extract_output
from ._model_call import stream_model_call
from ._state import ExecutionState

__all__ = ("run_extract_step",)


async def run_extract_step(state: ExecutionState, step: ClaudeExtractStep, consumers: Sequence[Any]) -> Response:
    """``claude_extract``: the streamed text, extracted (and validated) into ``Response.output``."""
    config = step.extraction_config

    async def extract(response: Response) -> Response:
        try:
            value = extract_output(response.text, config.format, config.schema)
        except ExtractError as exc:
            raise StepError(f"extraction ({config.format}) failed: {exc}", step=step.name) from exc
        return attrs.evolve(response, output=value)

    return await stream_model_call(state, step, consumers, state.provider, finish=extract)
