"""The step runners: one coroutine per step type, ``runner(state, step, consumers) -> Response``.

The executor (``_executor``) orchestrates a run; this module turns one step of
a spec into engine calls:

- ``claude`` (and every claude-family type): the tools of ``allowed_tools``
  minus ``disallowed_tools`` (after the pipeline's defaults and a
  ``claude_smart`` preset are merged; none when ``allowed_tools`` is not set),
  their definitions sent, the tool-use loop up to ``max_turns``.
- ``claude_smart``: the preset's options under the step's own.
- ``claude_session``: the conversation of ``session_config.session_name``
  before the prompt, saved (and persisted) after the step.
- ``claude_extract``: ``extraction_config`` applied to the streamed text
  before ``Done``; the result is ``Response.output``.
- ``claude_batch``: tasks (or items through the prompt template) as sub-steps
  ``NAME[i]``, at most ``max_parallel`` at once; outputs in task order.
- ``parallel_claude``: branches ``NAME.ID`` in a child nursery, ``fail_fast``.
- ``claude_robust``: a ``RetryPolicy`` from ``retry_config``.
- ``llm``: ``provider: claude | mock | dotted.path.Provider``; tools as for ``claude``.
- ``python``: a user callable with a ``StepContext``.

``max_turns`` when not set: ``DEFAULT_TOOL_TURNS`` (10) when tools are
offered, else 1.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from ._errors import ProviderTimeoutError, StepError
from ._registry import import_object, resolve_attr, resolve_provider
from .engine import (
    Event,
    Metrics,
    ModelRequest,
    Provider,
    Response,
    ThinkingBlock,
    Usage,
    to_api_block,
)
from .engine import _step as _engine_step
from .engine._group import SubConsumer, stream_group
from .engine._pricing import add_cost
from .specs import (
    ClaudeBatchStep,
    ClaudeExtractStep,
    ClaudeOptions,
    ClaudeRobustStep,
    ClaudeSessionStep,
    ClaudeSmartStep,
    FilePart,
    LlmStep,
    ParallelClaudeStep,
    PreviousResponsePart,
    PythonStep,
    StaticPart,
)

if TYPE_CHECKING:
    from ._executor import RunState

__all__ = (
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODEL",
    "DEFAULT_TOOL_TURNS",
    "STEP_RUNNERS",
    "StepContext",
    "build_request",
    "merge_options",
    "render_prompt",
    "step_options",
)

#: The model asked for when neither the step nor ``defaults`` names one.
DEFAULT_MODEL: Final = "claude-sonnet-4-5"
#: The output cap when ``max_tokens`` is not set.
DEFAULT_MAX_TOKENS: Final = 4096
#: ``max_turns`` when not set and tools are offered (without tools: 1 call).
DEFAULT_TOOL_TURNS: Final = 10
#: Seconds a ``Bash`` tool command may run.
BASH_TIMEOUT: Final = 30.0


@attrs.define(kw_only=True)
class StepContext:
    """What a ``python`` step's callable receives.

    ``steps[name]`` is each finished step's ``Response`` (``.text``, ``.output``);
    ``events`` is a receive channel of the ``input_stream`` step's live events
    (``None`` without ``input_stream``); it ends after that step's terminal event.
    """

    run_id: str
    """The run's id."""
    step: str
    """This step's name."""
    steps: Mapping[str, Response]
    """Finished steps' responses, by name."""
    vars: Mapping[str, Any]
    """The pipeline's variables (after ``--set``)."""
    args: Mapping[str, Any]
    """The step's ``args``."""
    events: trio.MemoryReceiveChannel[Event] | None = None
    """The ``input_stream`` step's events, live."""
    workspace: Path = Path(".")
    """The run's workspace."""
    output_dir: Path = Path(".")
    """The pipeline's output folder."""


# --------------------------------------------------------------------------- options


def merge_options(defaults: ClaudeOptions, step: ClaudeOptions) -> ClaudeOptions:
    """``defaults`` under ``step``, field by field: a step's non-``None`` field wins."""
    return ClaudeOptions(
        **{
            f.name: (getattr(step, f.name) if getattr(step, f.name) is not None else getattr(defaults, f.name))
            for f in attrs.fields(ClaudeOptions)
        }
    )


def step_options(state: RunState, step: Any, options: ClaudeOptions | None = None) -> ClaudeOptions:
    """The options a model call of *step* runs with: defaults < preset (``claude_smart``) < step.

    *options* replaces the step's own (a ``parallel_claude`` branch passes its
    options merged over the step's).
    """
    own = step.claude_options if options is None else options
    if isinstance(step, ClaudeSmartStep):
        from .specs._presets import apply_preset

        own = apply_preset(step.preset, own)
    return merge_options(state.spec.defaults.claude_options, own)


def _instantiate(ref: str, **kwargs: Any) -> Provider:
    cls = resolve_provider(ref)
    return cls(**kwargs)


# --------------------------------------------------------------------------- prompts


async def render_prompt(state: RunState, step: Any, prompt: Any = None, extra: Mapping[str, Any] | None = None) -> str:
    """Render *prompt* (default: the step's) into text: templates, files, previous responses.

    *extra* adds template values (``item`` and ``index`` for batch items).
    """
    from .specs._templates import TemplateError, render

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


def _previous_response(state: RunState, step_name: str, part: PreviousResponsePart) -> str:
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
    extract_value = import_object("sluiceway.tools:extract_value")
    try:
        return extract_value(text, part.extract)
    except ValueError as exc:
        raise StepError(f"previous_response {part.step!r} extract {part.extract!r}: {exc}", step=step_name) from exc


def build_request(state: RunState, step: Any, prompt_text: str, *, path: str | None = None,
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


# --------------------------------------------------------------------------- one model call


StepRunner = Callable[["RunState", Any, Sequence[Any]], Awaitable[Response]]


def _toolbox(state: RunState, step: Any, opts: ClaudeOptions) -> Any:
    """The step's tools: ``allowed_tools`` minus ``disallowed_tools``; ``None`` when it offers none.

    No ``allowed_tools`` (after defaults and presets are merged) offers no tools:
    no tool schemas sent (input tokens, cost), no file the user did not allow
    written. (The engine's ``Toolbox(allowed=None)`` default is not used here.)
    """
    if opts.allowed_tools is None:
        return None
    from .tools import Toolbox

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


def _max_turns(opts: ClaudeOptions, toolbox: Any) -> int:
    if opts.max_turns is not None:
        return opts.max_turns
    return DEFAULT_TOOL_TURNS if toolbox is not None else 1


async def stream_model_call(
    state: RunState,
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
    policy = step.on_handler_error or state.spec.defaults.on_handler_error or "isolate"
    return await _engine_step.stream_step(
        run=state.run,
        path=path or step.name,
        provider=provider,
        request=request,
        consumers=consumers,
        step_type=step.type,
        tool_runner=toolbox,
        max_turns=_max_turns(opts, toolbox),
        retry=retry,
        cost=state.cost_function(provider),
        on_handler_error=policy,
        finish=finish,
    )


async def run_claude_step(state: RunState, step: Any, consumers: Sequence[Any]) -> Response:
    """``claude`` and ``claude_smart``: one streamed step with the tool-use loop."""
    return await stream_model_call(state, step, consumers, state.provider)


async def run_llm_step(state: RunState, step: LlmStep, consumers: Sequence[Any]) -> Response:
    """``llm``: ``provider: claude`` uses the run's mode provider; ``mock`` the mock; else a dotted path."""
    if step.provider in ("claude", "anthropic"):
        provider = state.provider
    else:
        provider = state.extra_providers.get(step.provider)
        if provider is None:
            provider = _instantiate(step.provider)
            state.extra_providers[step.provider] = provider
    return await stream_model_call(state, step, consumers, provider)


# --------------------------------------------------------------------------- sessions


def conversation_turns(response: Response) -> list[dict[str, Any]]:
    """The Messages API messages a response added (assistant turns and tool results)."""
    turns = []
    for message in response.messages:
        content = [to_api_block(b) for b in message.content if not isinstance(b, ThinkingBlock)]
        if content:
            turns.append({"role": message.role, "content": content})
    return turns


async def run_session_step(state: RunState, step: ClaudeSessionStep, consumers: Sequence[Any]) -> Response:
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


# --------------------------------------------------------------------------- extraction


async def run_extract_step(state: RunState, step: ClaudeExtractStep, consumers: Sequence[Any]) -> Response:
    """``claude_extract``: the streamed text, extracted (and validated) into ``Response.output``."""
    from .tools import ExtractError, extract_output

    config = step.extraction_config

    async def extract(response: Response) -> Response:
        try:
            value = extract_output(response.text, config.format, config.schema)
        except ExtractError as exc:
            raise StepError(f"extraction ({config.format}) failed: {exc}", step=step.name) from exc
        return attrs.evolve(response, output=value)

    return await stream_model_call(state, step, consumers, state.provider, finish=extract)


# --------------------------------------------------------------------------- retries


def retry_policy(step: ClaudeRobustStep, opts: ClaudeOptions) -> Any:
    """The ``RetryPolicy`` of a ``claude_robust`` step (``fallback_model`` also from its options)."""
    from .engine._retry import RetryPolicy

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


async def run_robust_step(state: RunState, step: ClaudeRobustStep, consumers: Sequence[Any]) -> Response:
    """``claude_robust``: retries under one budget; the final response is the last attempt's."""
    retry = retry_policy(step, step_options(state, step))
    return await stream_model_call(state, step, consumers, state.provider, retry=retry)


# --------------------------------------------------------------------------- composite steps


def _composite_response(outputs: list[Any], responses: Sequence[Response | None], started: float) -> Response:
    usage = superseded = Usage()
    cost: float | None = 0.0
    superseded_cost: float | None = 0.0
    for response in responses:
        if response is None:
            continue
        usage = usage + response.usage
        cost = add_cost(cost, response.cost_usd)
        superseded = superseded + response.superseded_usage
        superseded_cost = add_cost(superseded_cost, response.superseded_cost_usd)
    models = {r.model for r in responses if r is not None and r.model}
    return Response(
        text="",  # the sub-steps streamed the text; ``output`` holds each one's
        output=outputs,
        usage=usage,
        cost_usd=cost,
        superseded_usage=superseded,
        superseded_cost_usd=superseded_cost,
        model=models.pop() if len(models) == 1 else None,
        metrics=Metrics(duration=trio.current_time() - started),
    )


def _result_of(response: Response) -> Any:
    return response.output if response.output is not None else response.text


def _group_kwargs(state: RunState, step: Any) -> dict[str, Any]:
    return {
        "run": state.run,
        "path": step.name,
        "step_type": step.type,
        "provider": state.provider.name,
        "model": step_options(state, step).model or DEFAULT_MODEL,
        "buffer_size": step.stream_buffer_size or state.spec.defaults.stream_buffer_size
        or _engine_step.DEFAULT_BUFFER_SIZE,
        "on_handler_error": step.on_handler_error or state.spec.defaults.on_handler_error or "isolate",
    }


def batch_prompts(step: ClaudeBatchStep) -> list[tuple[Any, dict[str, Any] | None]]:
    """Each task's (prompt, extra template values): ``tasks``, or ``items`` through ``prompt``."""
    if step.tasks:
        return [(task.prompt, {"index": i}) for i, task in enumerate(step.tasks)]
    if step.items:
        if step.prompt is None:
            raise StepError("items need a prompt template ({{item}}, {{index}})", step=step.name)
        return [(step.prompt, {"item": item, "index": i}) for i, item in enumerate(step.items)]
    raise StepError("a claude_batch step needs tasks or items", step=step.name)


async def run_batch_step(state: RunState, step: ClaudeBatchStep, consumers: Sequence[Any]) -> Response:
    """``claude_batch``: sub-steps ``NAME[i]``, ``max_parallel`` at once; outputs in task order.

    Every task runs to its end (a failed one does not stop the others); the
    step fails when any task failed, naming them, with the others' results in
    its partial response.
    """
    prompts = batch_prompts(step)
    config = step.batch_config
    if config.max_parallel < 1:
        raise StepError(f"batch_config.max_parallel must be >= 1, got {config.max_parallel}", step=step.name)
    limiter = trio.CapacityLimiter(config.max_parallel)
    started = trio.current_time()
    responses: list[Response | None] = [None] * len(prompts)
    errors: dict[int, BaseException] = {}

    async def task(index: int, prompt: Any, extra: dict[str, Any] | None, sub: SubConsumer) -> None:
        path = f"{step.name}[{index}]"
        async with limiter:
            try:
                if config.timeout_per_task is None:
                    responses[index] = await stream_model_call(
                        state, step, [sub()], state.provider, path=path, prompt=prompt, extra=extra
                    )
                else:
                    try:
                        with trio.fail_after(config.timeout_per_task):
                            responses[index] = await stream_model_call(
                                state, step, [sub()], state.provider, path=path, prompt=prompt, extra=extra
                            )
                    except trio.TooSlowError as exc:
                        raise ProviderTimeoutError(
                            f"task {index} took longer than timeout_per_task={config.timeout_per_task}s", step=path
                        ) from exc
            except Exception as exc:  # one task's failure: the others go on
                errors[index] = exc

    async def body(sub: SubConsumer) -> Response:
        async with trio.open_nursery() as nursery:
            for index, (prompt, extra) in enumerate(prompts):
                nursery.start_soon(task, index, prompt, extra, sub)
        outputs = [None if r is None else _result_of(r) for r in responses]
        response = _composite_response(outputs, responses, started)
        if errors:
            listed = "; ".join(f"[{i}] {errors[i]}" for i in sorted(errors))
            error = StepError(f"{len(errors)} of {len(prompts)} tasks failed: {listed}", step=step.name)
            error.__cause__ = errors[min(errors)]
            error.partial = response  # type: ignore[attr-defined]
            raise error
        return response

    return await stream_group(
        consumers=consumers, body=body, concurrency=min(config.max_parallel, len(prompts)),
        **_group_kwargs(state, step),
    )


async def run_parallel_step(state: RunState, step: ParallelClaudeStep, consumers: Sequence[Any]) -> Response:
    """``parallel_claude``: branches ``NAME.ID`` in a child nursery; outputs in branch order.

    ``fail_fast`` (the default): the first failure cancels the other branches
    (each still ends with exactly one ``Cancelled``) and fails the step with
    that error. Without it every branch finishes; the step fails when any did.
    """
    if not step.parallel_tasks:
        raise StepError("a parallel_claude step needs parallel_tasks", step=step.name)
    ids = [t.id for t in step.parallel_tasks]
    if len(set(ids)) != len(ids):
        raise StepError(f"parallel_tasks ids must be unique, got {ids}", step=step.name)
    started = trio.current_time()
    responses: list[Response | None] = [None] * len(ids)
    errors: dict[int, BaseException] = {}

    async def body(sub: SubConsumer) -> Response:
        async with trio.open_nursery() as nursery:

            async def branch(index: int) -> None:
                task = step.parallel_tasks[index]
                try:
                    responses[index] = await stream_model_call(
                        state, step, [sub()], state.provider,
                        path=f"{step.name}.{task.id}",
                        prompt=task.prompt,
                        options=merge_options(step.claude_options, task.claude_options),
                        mock=task.mock,
                    )
                except Exception as exc:
                    errors[index] = exc
                    if step.fail_fast:
                        nursery.cancel_scope.cancel()

            for index in range(len(ids)):
                nursery.start_soon(branch, index)
        outputs = [None if r is None else _result_of(r) for r in responses]
        response = _composite_response(outputs, responses, started)
        if errors:
            first = min(errors)  # fail_fast: only the first failure is recorded (the others were cancelled)
            listed = "; ".join(f"{ids[i]}: {errors[i]}" for i in sorted(errors))
            error = StepError(f"branch {listed}" if len(errors) == 1 else f"branches failed: {listed}", step=step.name)
            error.__cause__ = errors[first]
            error.partial = response  # type: ignore[attr-defined]
            raise error
        return response

    return await stream_group(consumers=consumers, body=body, concurrency=len(ids), **_group_kwargs(state, step))


# --------------------------------------------------------------------------- python


def resolve_callable(ref: str, spec: Any) -> Any:
    """Import a ``python`` step's callable: a dotted path, or a module file next to the spec.

    ``helpers:fn`` names ``helpers.py`` in the spec's folder when no importable
    module ``helpers`` exists. The file is loaded on its own (``sys.path`` and
    ``sys.modules`` are left alone), once per call.

    Raises:
        RegistryError: neither an importable module nor a file next to the spec.
    """
    from ._registry import RegistryError

    try:
        return import_object(ref)
    except RegistryError:
        module_name, _, attr_path = ref.partition(":") if ":" in ref else ref.rpartition(".")
        source = getattr(spec, "source", None)
        if not source or source == "<string>" or not module_name or "." in module_name:
            raise
        path = Path(source).parent / f"{module_name}.py"
        if not path.is_file():
            raise
    import importlib.util

    module_spec = importlib.util.spec_from_file_location(f"_sluiceway_spec_{module_name}", path)
    if module_spec is None or module_spec.loader is None:  # pragma: no cover - a .py file always has one
        raise RegistryError(f"cannot load {str(path)!r} for {ref!r}")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise RegistryError(f"cannot load {str(path)!r} for {ref!r}: {exc}") from exc
    return resolve_attr(module, attr_path, repr(str(path)))


async def run_python_step(
    state: RunState,
    step: PythonStep,
    consumers: Sequence[Any],
    events: trio.MemoryReceiveChannel[Event] | None = None,
) -> Response:
    """``python``: call ``callable(ctx)`` (sync or async); its return value is the output.

    A sync callable runs in the trio thread (keep it short). The return value
    becomes ``Response.output``; ``Response.text`` is it as text (JSON for
    non-strings, ``""`` for ``None``).
    """
    fn = resolve_callable(step.callable, state.spec)
    ctx = StepContext(
        run_id=state.run_id,
        step=step.name,
        steps=dict(state.responses),
        vars=state.variables,
        args=dict(step.args),
        events=events,
        workspace=state.workspace,
        output_dir=state.out_root,
    )
    started = trio.current_time()
    value = fn(ctx)
    if inspect.isawaitable(value):
        value = await value
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return Response(
        text=text,
        output=value,
        model=None,
        metrics=Metrics(duration=trio.current_time() - started),
    )


#: Step type -> runner.
STEP_RUNNERS: dict[str, StepRunner] = {
    "claude": run_claude_step,
    "claude_smart": run_claude_step,
    "claude_session": run_session_step,  # type: ignore[dict-item]
    "claude_extract": run_extract_step,  # type: ignore[dict-item]
    "claude_batch": run_batch_step,  # type: ignore[dict-item]
    "claude_robust": run_robust_step,  # type: ignore[dict-item]
    "parallel_claude": run_parallel_step,  # type: ignore[dict-item]
    "llm": run_llm_step,  # type: ignore[dict-item]
    "python": run_python_step,  # type: ignore[dict-item]
}
