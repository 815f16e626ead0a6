"""One model call of a step: its options, request and tools, streamed by the engine.

Every model step type ends in ``stream_model_call``: the options merged
(defaults < ``claude_smart`` preset < step), the prompt rendered, the
``ModelRequest`` built, the step's ``Toolbox`` made, and ``stream_step`` run.

Tools: only ``allowed_tools`` minus ``disallowed_tools`` of the built-in tools
are offered, none when ``allowed_tools`` is not set. Function tools
(``claude_options.tools`` and the run's ``tools=``) and the tools of
``claude_options.mcp_servers`` are offered as declared (``allowed_tools`` naming
any of them limits them to those). The MCP servers start before the step
streams and are closed when it ends. The permission hook
(``claude_options.can_use_tool``, else the run's ``can_use_tool=``) runs before
every call. ``max_turns`` when not set: ``DEFAULT_TOOL_TURNS`` when tools are
offered, else 1 (plus the output's retries with typed output).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Final, Literal

import attrs

from .._errors import StepError
from .._registry import RegistryError, resolve_callable, spec_search_path
from ..engine import ModelRequest, Provider, ProviderEvent, Response, stream_step
from ..engine._actors import HANDLER_TIMEOUT
from ..specs import ClaudeOptions
from ..tools import (
    DEFAULT_SANDBOX,
    MCP_CALL_TIMEOUT,
    FunctionTool,
    OutputSpec,
    StepTools,
    Toolbox,
    as_function_tool,
    open_mcp_tools,
)
from ._prepare import merge_options, model_options
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


def step_options(state: ExecutionState, step: Any, options: ClaudeOptions | None = None) -> ClaudeOptions:
    """The options a model call of *step* runs with: defaults < preset (``claude_smart``) < step.

    *options* replaces the step's own (a ``parallel_claude`` branch passes its
    options merged over the step's).
    """
    return model_options(state.spec, step, options)


def handler_error_policy(state: ExecutionState, step: Any) -> Literal["isolate", "fail"]:
    """The step's ``on_handler_error``, else the defaults', else ``isolate``."""
    policy: Literal["isolate", "fail"] = (
        step.on_handler_error or state.spec.defaults.on_handler_error or "isolate"
    )
    return policy


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
            sandbox=opts.sandbox or DEFAULT_SANDBOX,
            sandbox_network=bool(opts.sandbox_network),
        )
    except ValueError as exc:
        raise StepError(f"tools: {exc}", step=step.name) from exc
    return toolbox if toolbox.tools else None


def _max_turns(opts: ClaudeOptions, tools: Any, output: OutputSpec | None) -> int:
    if opts.max_turns is not None:
        return opts.max_turns
    if tools is not None:
        return DEFAULT_TOOL_TURNS
    return 1 + (output.retries if output is not None else 0)


def function_tools(state: ExecutionState, step: Any, opts: ClaudeOptions) -> list[FunctionTool]:
    """The step's function tools: ``claude_options.tools`` (dotted paths), then the run's ``tools=``.

    Raises:
        StepError: a path names nothing importable, or no tool.
    """
    found: list[FunctionTool] = []
    search = spec_search_path(state.spec.source, str(state.workspace))
    for ref in opts.tools or ():
        try:
            found.append(as_function_tool(resolve_callable(ref, search)))
        except (RegistryError, TypeError) as exc:
            raise StepError(f"claude_options.tools: {ref!r}: {exc}", step=step.name) from exc
    names = {f.name for f in found}
    found += [t for t in (as_function_tool(t) for t in state.options.tools) if t.name not in names]
    return found


def permission_hook(state: ExecutionState, step: Any, opts: ClaudeOptions) -> Any:
    """The step's ``can_use_tool``: its dotted path, else the run's ``can_use_tool=``, else ``None``."""
    if opts.can_use_tool is None:
        return state.options.can_use_tool
    try:
        hook = resolve_callable(opts.can_use_tool, spec_search_path(state.spec.source, str(state.workspace)))
    except RegistryError as exc:
        raise StepError(f"claude_options.can_use_tool: {exc}", step=step.name) from exc
    if not callable(hook):
        raise StepError(f"claude_options.can_use_tool: {opts.can_use_tool!r} is not callable", step=step.name)
    return hook


class _Counted:
    """*provider*, counting each call in the run's ``requests`` (``result.json``'s ``paid.requests``)."""

    def __init__(self, provider: Provider, state: ExecutionState) -> None:
        self.name = provider.name
        self._provider = provider
        self._state = state

    def stream(self, request: ModelRequest) -> AbstractAsyncContextManager[AsyncIterator[ProviderEvent]]:
        self._state.requests += 1
        return self._provider.stream(request)

    async def aclose(self) -> None:  # the run closes the provider itself
        pass


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
    output: OutputSpec | None = None,
) -> Response:
    """Render, build the request and tools (starting the MCP servers), and ``stream_step`` one (sub-)step.

    *rendered* is a prompt already rendered (it is not rendered again: its text may hold ``{{``).
    *output* makes the output tool's input the response's ``output`` (tool-based structured output).
    The step's MCP servers are closed before this returns, also on error or cancellation.
    """
    opts = step_options(state, step, options)
    text = rendered if rendered is not None else await render_prompt(state, step, prompt, extra)
    request = build_request(state, step, text, path=path, options=opts, mock=mock, history=history)
    toolbox = _toolbox(state, step, opts)
    functions = function_tools(state, step, opts)
    hook = permission_hook(state, step, opts)
    tool_timeout = None if opts.tool_timeout_ms is None else opts.tool_timeout_ms / 1000
    async with AsyncExitStack() as stack:
        mcp = None
        if opts.mcp_servers:
            mcp = await stack.enter_async_context(
                open_mcp_tools(
                    opts.mcp_servers, step=path or step.name, call_timeout=tool_timeout or MCP_CALL_TIMEOUT
                )
            )
        tools: Any = toolbox
        if functions or mcp is not None or (toolbox is not None and hook is not None):
            try:
                tools = StepTools(
                    step=path or step.name, toolbox=toolbox, functions=functions, mcp=mcp,
                    allowed=opts.allowed_tools, disallowed=opts.disallowed_tools,
                    can_use_tool=hook, tool_timeout=tool_timeout,
                )
            except ValueError as exc:
                raise StepError(f"tools: {exc}", step=step.name) from exc
            if not tools.names:
                tools = None
        if output is not None:
            offered = tuple(tools.definitions()) if tools is not None else ()
            choice = {"type": "any"} if offered else {"type": "tool", "name": output.tool_name}
            request = attrs.evolve(
                request, tools=(*offered, output.definition()), extra={**request.extra, "tool_choice": choice}
            )
        return await stream_step(
            run=state.run_context,
            path=path or step.name,
            provider=_Counted(provider, state),
            request=request,
            consumers=consumers,
            step_type=step.type,
            tool_runner=tools,
            max_turns=_max_turns(opts, tools, output),
            retry=retry,
            cost=state.cost_function(provider),
            on_handler_error=handler_error_policy(state, step),
            handler_timeout=handler_timeout(state, step),
            finish=finish,
            output=output,
        )
