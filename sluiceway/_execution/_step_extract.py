"""The ``claude_extract`` step type: structured output from the streamed text, or from a forced tool.

With a JSON ``schema`` (format ``json``), the model is offered the output tool
(``final_output``) whose input schema is the schema, and is made to call it:
its input streams as ``PartialOutput`` events and, checked against the
schema, is the response's ``output``. A model that answers in text instead
(a scripted mock) has its text extracted as without a schema.

Otherwise ``extraction_config`` is applied to the text before ``Done``; the
value is the response's ``output``, and a failed extraction fails the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from .._errors import StepError
from ..engine import Response
from ..specs import ClaudeExtractStep
from ..tools import ExtractError, OutputSpec, OutputValidationError, extract_output
from ._model_call import stream_model_call
from ._state import ExecutionState

__all__ = ("run_extract_step",)


async def run_extract_step(state: ExecutionState, step: ClaudeExtractStep, consumers: Sequence[Any]) -> Response:
    """``claude_extract``: the streamed text, extracted (and validated) into ``Response.output``."""
    config = step.extraction_config
    output = None
    if config.schema is not None and config.format == "json" and config.schema.get("type") == "object":
        output = OutputSpec.of(config.schema)

    async def extract(response: Response) -> Response:
        if output is not None and response.output is not None:
            return response  # the output tool's input, already checked against the schema
        try:
            value = extract_output(response.text, config.format, config.schema)
        except ExtractError as exc:
            raise StepError(f"extraction ({config.format}) failed: {exc}", step=step.name) from exc
        return attrs.evolve(response, output=value)

    try:
        return await stream_model_call(state, step, consumers, state.provider, finish=extract, output=output)
    except OutputValidationError as exc:
        raise StepError(f"extraction (json) failed: {exc}", step=step.name) from exc
