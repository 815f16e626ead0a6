"""Prompt rendering: templates, prompt files and earlier steps' responses, into one text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import trio

from .._errors import StepError
from ..specs import FilePart, PreviousResponsePart, StaticPart, TemplateError, render
from ..tools import extract_value
from ._state import ExecutionState

__all__ = ("render_prompt",)


async def render_prompt(
    state: ExecutionState, step: Any, prompt: Any = None, extra: Mapping[str, Any] | None = None
) -> str:
    """Render *prompt* (default: the step's) into text: templates, files, previous responses.

    *extra* adds template values (``item`` and ``index`` for batch items).
    """
    prompt = step.prompt if prompt is None else prompt
    if prompt is None:
        raise StepError("the step has no prompt", step=step.name)
    values = state.template_values(step.name)
    if extra:
        values.update(extra)
    try:
        if isinstance(prompt, str):
            return render(prompt, values)
        pieces: list[str] = []
        for part in prompt:
            if isinstance(part, StaticPart):
                pieces.append(render(part.content, values))
            elif isinstance(part, FilePart):
                path = state.workspace / part.path
                try:
                    pieces.append(await trio.Path(path).read_text(encoding="utf-8"))
                except OSError as exc:
                    raise StepError(f"prompt file {str(path)!r}: {exc.strerror or exc}", step=step.name) from exc
            elif isinstance(part, PreviousResponsePart):
                pieces.append(_previous_response(state, step.name, part))
            else:  # pragma: no cover - the spec model has no other parts
                raise StepError(f"unknown prompt part {part!r}", step=step.name)
        return "\n\n".join(pieces)
    except TemplateError as exc:
        raise StepError(f"prompt template: {exc}", step=step.name) from exc


def _previous_response(state: ExecutionState, step_name: str, part: PreviousResponsePart) -> str:
    response = state.responses.get(part.step)
    if response is None:
        earlier = state.result.steps.get(part.step)
        why = f"it was {earlier.status}" if earlier is not None else "it has not run"
        raise StepError(f"previous_response: step {part.step!r} has no response ({why})", step=step_name)
    text = response.text
    if not text and response.output is not None:
        text = response.output if isinstance(response.output, str) else json.dumps(response.output)
    if part.extract is None:
        return text
    try:
        return extract_value(text, part.extract)
    except ValueError as exc:
        raise StepError(f"previous_response {part.step!r} extract {part.extract!r}: {exc}", step=step_name) from exc
