"""The ``claude_session`` step type: a conversation continued across steps and runs.

The conversation of ``session_config.session_name`` goes before the prompt;
the prompt and the turns the step added are saved (and, with ``persist``,
written) before ``Done``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine import Response, ThinkingBlock, to_api_block
from ..specs import ClaudeSessionStep
from ._model_call import stream_model_call
from ._prompts import render_prompt
from ._state import ExecutionState

__all__ = ("conversation_turns", "run_session_step")


def conversation_turns(response: Response) -> list[dict[str, Any]]:
    """The Messages API messages a response added (assistant turns and tool results)."""
    turns = []
    for message in response.messages:
        content = [to_api_block(b) for b in message.content if not isinstance(b, ThinkingBlock)]
        if content:
            turns.append({"role": message.role, "content": content})
    return turns


async def run_session_step(state: ExecutionState, step: ClaudeSessionStep, consumers: Sequence[Any]) -> Response:
    """``claude_session``: continue the named conversation; save it (and persist) before ``Done``."""
    config = step.session_config
    store = state.session_store()
    history = await store.aload(config.session_name, persist=config.persist)
    prompt_text = await render_prompt(state, step)

    async def save(response: Response) -> Response:
        messages = [*history, {"role": "user", "content": prompt_text}, *conversation_turns(response)]
        await store.asave(config.session_name, messages, persist=config.persist, max_history=config.max_history)
        return response

    return await stream_model_call(
        state, step, consumers, state.provider, rendered=prompt_text, history=history, finish=save
    )
