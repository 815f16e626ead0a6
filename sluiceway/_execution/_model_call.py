"""One model call of a step: its options, request and tools, streamed by the engine.

Every model step type ends in ``stream_model_call``: the options merged
(defaults < ``claude_smart`` preset < step), the prompt rendered, the
``ModelRequest`` built, the step's ``Toolbox`` made, and ``stream_step`` run.

Tools: only ``allowed_tools`` minus ``disallowed_tools`` are offered, none when
``allowed_tools`` is not set. ``max_turns`` when not set: ``DEFAULT_TOOL_TURNS``
when tools are offered, else 1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from .._errors import StepError
from ..engine import ModelRequest, Provider, Response, stream_step
from ..engine._actors import HANDLER_TIMEOUT
from ..specs import ClaudeOptions, ClaudeSmartStep, apply_preset
from ..tools import Toolbox
from ._prompts import render_prompt
from ._state import ExecutionState

__all__ = (
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODEL",
    "DEFAULT_TOOL_TURNS",
    "build_request",
    "handler_error_policy",
    "handler_timeout",
    "merge_options",
    "step_options",
    "stream_model_call",
)

#: The model asked for when neither the step nor ``defaults`` names one.
DEFAULT_MODEL: Final = "claude-sonnet-4-5"
#: The output cap when ``max_tokens`` is not set.
DEFAULT_MAX_TOKENS: Final = 4096
#: ``max_turns`` when not set and tools are offered (without tools: 1 call).
DEFAULT_TOOL_TURNS: Final = 10
#: Seconds a ``Bash`` tool command may run.
BASH_TIMEOUT: Final = 30.0


def merge_options(defaults: ClaudeOptions, step: ClaudeOptions) -> ClaudeOptions:
    """``defaults`` under ``step``, field by field: a step's non-``None`` field wins."""
    return ClaudeOptions(
        **{
            f.name: (getattr(step, f.name) if getattr(step, f.name) is not None else getattr(defaults, f.name))
            for f in attrs.fields(ClaudeOptions)
        }
    )


def step_options(state: ExecutionState, step: Any, options: ClaudeOptions | None = None) -> ClaudeOptions:
    """The options a model call of *step* runs with: defaults < preset (``claude_smart``) < step.

    *options* replaces the step's own (a ``parallel_claude`` branch passes its
    options merged over the step's).
    """
    own = step.claude_options if options is None else options
    if isinstance(step, ClaudeSmartStep):
        own = apply_preset(step.preset, own)
    return merge_options(state.spec.defaults.claude_options, own)


def handler_error_policy(state: ExecutionState, step: Any) -> str:
    """The step's ``on_handler_error``, else the defaults', else ``isolate``."""
    return step.on_handler_error or state.spec.defaults.on_handler_error or "isolate"


def handler_timeout(state: ExecutionState, step: Any) -> float | None:
    """Seconds one handler call may take: the step's ``handler_timeout_ms``, else the defaults',
    else ``HANDLER_TIMEOUT``; ``None`` for ``none`` (no bound)."""
    ms = step.handler_timeout_ms if step.handler_timeout_ms is not None else state.spec.defaults.handler_timeout_ms
    if ms is None:
        return HANDLER_TIMEOUT
    return None if ms == "none" else ms / 1000


def build_request(state: ExecutionState, step: Any, prompt_text: str, *, path: str | None = None,
                  options: ClaudeOptions | None = None, mock: Any = None,
                  history: Sequence[dict[str, Any]] = ()) -> ModelRequest:
    """The ``ModelRequest`` of one model call of *step*; *options* are already merged (``step_options``)."""
    opts = options if options is not None else step_options(state, step)
    system = opts.system_prompt
    if opts.append_system_prompt:
        system = f"{system}\n\n{opts.append_system_prompt}" if system else opts.append_system_prompt
    return ModelRequest(
        step=path or step.name,
        model=opts.model or DEFAULT_MODEL,
        messages=(*history, {"role": "user", "content": prompt_text}),
        system=system,
        max_tokens=opts.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=opts.temperature,
        first_token_timeout=None if opts.first_token_timeout_ms is None else opts.first_token_timeout_ms / 1000,
        idle_timeout=None if opts.idle_timeout_ms is None else opts.idle_timeout_ms / 1000,
        mock=mock if mock is not None else step.mock,
    )


def _toolbox(state: ExecutionState, step: Any, opts: ClaudeOptions) -> Toolbox | None:
    """The step's tools: ``allowed_tools`` minus ``disallowed_tools``; ``None`` when it offers none.

    No ``allowed_tools`` (after defaults and presets are merged) offers no tools:
    no tool schemas sent (input tokens, cost), no file the user did not allow
    written. (``Toolbox(allowed=None)``'s default set is not used here.)
    """
    if opts.allowed_tools is None:
        return None
    try:
        toolbox = Toolbox(
            state.workspace,
            allowed=opts.allowed_tools,
            disallowed=opts.disallowed_tools,
            bash_timeout=BASH_TIMEOUT,
            cwd=opts.cwd,
        )
    except ValueError as exc:
        raise StepError(f"tools: {exc}", step=step.name) from exc
    return toolbox if toolbox.tools else None


def _max_turns(opts: ClaudeOptions, toolbox: Toolbox | None) -> int:
    if opts.max_turns is not None:
        return opts.max_turns
    return DEFAULT_TOOL_TURNS if toolbox is not None else 1


async def stream_model_call(
    state: ExecutionState,
    step: Any,
    consumers: Sequence[Any],
    provider: Provider,
    *,
    path: str | None = None,
    prompt: Any = None,
    extra: Mapping[str, Any] | None = None,
    options: ClaudeOptions | None = None,
    mock: Any = None,
    history: Sequence[dict[str, Any]] = (),
    retry: Any = None,
    finish: Callable[[Response], Awaitable[Response]] | None = None,
    rendered: str | None = None,
) -> Response:
    """Render, build the request and tools, and ``stream_step`` one (sub-)step.

    *rendered* is a prompt already rendered (it is not rendered again: its text may hold ``{{``).
    """
    opts = step_options(state, step, options)
    text = rendered if rendered is not None else await render_prompt(state, step, prompt, extra)
    request = build_request(state, step, text, path=path, options=opts, mock=mock, history=history)
    toolbox = _toolbox(state, step, opts)
    return await stream_step(
        run=state.run_context,
        path=path or step.name,
        provider=provider,
        request=request,
        consumers=consumers,
        step_type=step.type,
        tool_runner=toolbox,
        max_turns=_max_turns(opts, toolbox),
        retry=retry,
        cost=state.cost_function(provider),
        on_handler_error=handler_error_policy(state, step),
        handler_timeout=handler_timeout(state, step),
        finish=finish,
    )
