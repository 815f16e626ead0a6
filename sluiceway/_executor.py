"""The spec-aware executor: runs a ``Pipeline`` step by step on the engine.

It lives in the facade because the engine must not import specs (DESIGN.md):
the engine streams one model call (``stream_step``); this module turns each
step of a spec into a provider, a ``ModelRequest`` and fresh handler
instances, honours ``condition``, renders prompts, wires passthrough inputs
(``python`` steps with ``input_stream``), and writes the run's files.

Step types dispatch through ``STEP_RUNNERS`` (``_steps``): one coroutine per
type, ``runner(state, step, consumers) -> Response``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TextIO

import attrs
import trio

from ._conditions import Condition, parse_condition
from ._errors import (
    AuthenticationError,
    ProviderTimeoutError,
    SluicewayError,
    SpecError,
    SpecIssue,
    StepError,
)
from ._registry import (
    RegistryError,
    build_handlers,
    handler_option_names,
    import_object,
    resolve_handler,
    resolve_provider,
)
from ._result import RunResult, StepResult, result_to_json
from ._steps import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    STEP_RUNNERS,
    StepContext,
    _instantiate,
    build_request,
    merge_options,
    render_prompt,
    resolve_callable,
    run_claude_step,
    run_python_step,
    step_options,
)
from .engine import (
    Cancelled,
    Delta,
    Done,
    Event,
    Failed,
    HandlerContext,
    Provider,
    Response,
    RunFinished,
    RunStarted,
    StepStarted,
)
from .engine import _step as _engine_step
from .specs import LlmStep, Pipeline, PythonStep

__all__ = (
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODEL",
    "ModeUnavailableError",
    "RunOptions",
    "STEP_RUNNERS",
    "StepContext",
    "build_request",
    "execute",
    "merge_options",
    "prepare",
    "render_prompt",
)

Mode = Literal["mock", "live", "replay"]

#: Where runs write when neither the caller nor the spec says (relative to the cwd).
DEFAULT_OUTPUT_DIR: Final = "outputs"
#: Events a passthrough input (``python`` step ``input_stream``) holds; bounds memory only.
PASSTHROUGH_BUFFER: Final = 64
#: Seconds allowed for closing the provider and delivering ``RunFinished`` at the end.
CLOSE_TIMEOUT: Final = 5.0
#: Environment switch that adds the ``debug`` handler (on stderr) to every streaming step.
STREAM_DEBUG_ENV: Final = "SLUICEWAY_STREAM_DEBUG"


class ModeUnavailableError(SluicewayError):
    """The requested mode's provider is not available or cannot be set up
    (no cassette, a cassette file that cannot be opened or written)."""


@attrs.frozen(kw_only=True)
class RunOptions:
    """How to run a spec: everything that is not in the spec itself."""

    mode: Mode = "mock"
    """``mock`` (embedded, the default), ``live`` (Anthropic API) or ``replay`` (a cassette)."""
    variables: Mapping[str, Any] = attrs.field(factory=dict)
    """Overrides of the spec's ``variables`` (``--set KEY=VALUE``)."""
    output_dir: str | os.PathLike[str] | None = None
    """Overrides the spec's ``output_dir``; default ``./outputs``."""
    workspace: str | os.PathLike[str] | None = None
    """Overrides the spec's ``workspace_dir``; default the spec file's folder (or the cwd)."""
    handlers: tuple[str, ...] | None = None
    """Replace every streaming step's handlers with these (``--handler``); their
    options are the step's ``stream_handler_opts`` that these handlers declare."""
    stream: bool = True
    """``False`` (``--no-stream``) attaches no handlers to any step; results are still collected."""
    stdout: TextIO | None = None
    """Where console handlers write (``None``: ``sys.stdout`` at write time)."""
    stderr: TextIO | None = None
    """Where diagnostics go (``None``: ``sys.stderr`` at write time)."""
    cassette: str | None = None
    """``replay`` mode: the cassette to replay."""
    record: str | None = None
    """Record every provider event of the run into this cassette file."""
    speed: float = 1.0
    """``replay``: playback speed factor."""
    instant: bool = False
    """``replay``: no delays at all."""
    provider: Provider | None = None
    """Use this provider instance for model steps instead of the mode's (tests, ``invoke``).
    The run closes it at its end."""
    live_options: Mapping[str, Any] = attrs.field(factory=dict)
    """``live`` mode: keyword arguments for its ``AnthropicProvider`` (``max_starting``,
    ``streams_per_client``, ...; ``--max-starting``, ``--streams-per-client``). Any other
    mode with live options is an error (``ModeUnavailableError``), not a silent no-op."""
    run_id: str | None = None
    """Force the run id (default: ``run_<UTC time>_<random>``)."""
    handler_plan: Any = None
    """The Python API's ``handlers=`` / ``on_event=`` objects (a ``_handler_sources.HandlerPlan``):
    ``replaces(step_name)`` drops the spec's handlers of a step, ``build(step, spec, context_for)``
    returns the ``(handler, name)`` pairs to attach to a streaming step."""


# --------------------------------------------------------------------------- preparation


@attrs.frozen
class _Prepared:
    """What ``prepare`` checked and derived from a spec, before any task runs."""

    conditions: Mapping[str, Condition]
    followers: Mapping[str, tuple[str, ...]]
    """Upstream step name -> python steps that take its events (``input_stream``)."""


def _effective_refs(step: Any, spec: Pipeline, options: RunOptions) -> tuple[str, ...]:
    if not options.stream or not step.stream:
        return ()
    if options.handlers is not None:
        return tuple(options.handlers)
    if options.handler_plan is not None and options.handler_plan.replaces(step.name):
        return ()
    ref = step.stream_handler if step.stream_handler is not None else spec.defaults.stream_handler
    if ref is None:
        return ()
    return (ref,) if isinstance(ref, str) else tuple(ref)


def _effective_opts(
    step: Any, spec: Pipeline, refs: Sequence[Any], options: RunOptions, *, replaced: bool = False
) -> dict[str, Any]:
    defaults = spec.defaults
    if step.stream_handler is None or step.stream_handler == defaults.stream_handler:
        opts = {**defaults.stream_handler_opts, **step.stream_handler_opts}
    else:
        opts = dict(step.stream_handler_opts)
    if replaced or options.handlers is not None:
        # --handler replaces the configured handlers: keep only the options they declare
        declared: set[str] = set()
        for ref in refs:
            names = handler_option_names(resolve_handler(ref))
            if names is None:
                return {}
            declared |= names
        opts = {k: v for k, v in opts.items() if k in declared}
    return opts


def prepare(spec: Pipeline, options: RunOptions = RunOptions()) -> _Prepared:
    """Check what the loader cannot: conditions, handler refs, callables, input streams.

    Raises:
        SpecError: every problem found, one issue each.
    """
    issues: list[SpecIssue] = []
    source = spec.source or "<spec>"

    def problem(index: int, field: str, message: str) -> None:
        issues.append(SpecIssue(source, None, None, f"steps[{index}].{field}", message))

    conditions: dict[str, Condition] = {}
    followers: dict[str, list[str]] = {}
    names = [s.name for s in spec.steps]
    for index, step in enumerate(spec.steps):
        if step.condition is not None:
            try:
                conditions[step.name] = parse_condition(step.condition)
            except SpecError as exc:
                problem(index, "condition", "; ".join(i.message for i in exc.issues))
        for ref in _effective_refs(step, spec, options):
            try:
                resolve_handler(ref)
            except RegistryError as exc:
                problem(index, "stream_handler", str(exc))
        if isinstance(step, PythonStep):
            try:
                if not callable(resolve_callable(step.callable, spec)):
                    problem(index, "callable", f"{step.callable!r} is not callable")
            except RegistryError as exc:
                problem(index, "callable", str(exc))
            if step.input_stream is not None:
                if step.input_stream not in names[:index]:
                    problem(index, "input_stream", f"{step.input_stream!r} is not an earlier step")
                elif isinstance(spec.steps[names.index(step.input_stream)], PythonStep):
                    problem(index, "input_stream", f"{step.input_stream!r} is a python step; it has no event stream")
                else:
                    followers.setdefault(step.input_stream, []).append(step.name)
        if isinstance(step, LlmStep) and step.provider not in ("claude", "mock", "anthropic"):
            try:
                resolve_provider(step.provider)
            except RegistryError as exc:
                problem(index, "provider", str(exc))
    if issues:
        raise SpecError(issues)
    return _Prepared(conditions, {k: tuple(v) for k, v in followers.items()})


# --------------------------------------------------------------------------- providers


def open_mode_provider(spec: Pipeline, options: RunOptions) -> Provider:
    """The run's provider for its mode (and ``--record``). The caller closes it."""
    if options.live_options and (options.mode != "live" or options.provider is not None):
        given = ", ".join(sorted(options.live_options))
        where = "a given provider" if options.provider is not None else f"{options.mode} mode"
        raise ModeUnavailableError(f"live options ({given}) apply to live mode's own provider, not to {where}")
    if options.provider is not None:
        provider = options.provider
    elif options.mode == "mock":
        provider = _instantiate("mock")
    elif options.mode == "live":
        try:
            provider = _instantiate("claude", **options.live_options)
        except (TypeError, ValueError) as exc:
            if not options.live_options:
                raise
            # an unknown option, or a value out of range
            raise ModeUnavailableError(f"live mode: bad live options: {exc}") from exc
        if getattr(provider, "api_key", "unknown") is None:
            # fail before the run starts, not at its first step
            raise AuthenticationError("no Anthropic API key: set ANTHROPIC_API_KEY (live mode needs one)")
    elif options.mode == "replay":
        if options.cassette is None:
            raise ModeUnavailableError("replay mode needs a cassette (--cassette FILE)")
        cls = resolve_provider("replay")
        kwargs: dict[str, Any] = {"pipeline": spec.name}
        if options.instant:
            kwargs["instant"] = True
        else:
            kwargs["speed"] = options.speed
        try:
            provider = cls(options.cassette, **kwargs)
        except (OSError, ValueError) as exc:
            if isinstance(exc, SpecError):
                raise  # a corrupted cassette, or one from another pipeline: file:line issues
            raise ModeUnavailableError(f"cannot replay {options.cassette!r}: {exc}") from exc
    else:
        raise ModeUnavailableError(f"unknown mode {options.mode!r}; expected mock, live or replay")
    if options.record is not None:
        recorder = import_object("sluiceway.providers._replay:RecordingProvider")
        try:
            provider = recorder(provider, options.record, pipeline=spec.name)
        except OSError as exc:
            raise ModeUnavailableError(f"cannot record into {options.record!r}: {exc}") from exc
    return provider


# --------------------------------------------------------------------------- run state


def new_run_id() -> str:
    """``run_<UTC yyyymmdd-HHMMSS>_<6 hex>``: sortable and unique enough."""
    return f"run_{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}_{secrets.token_hex(3)}"


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\-\[\]]", "_", name) or "_"


@attrs.define(kw_only=True)
class RunState:
    """Everything one run shares across its steps. Step runners read it."""

    spec: Pipeline
    options: RunOptions
    prepared: _Prepared
    run_id: str
    run: Any
    """The engine's ``RunContext``."""
    provider: Provider
    workspace: Path
    out_root: Path
    run_dir: Path
    variables: dict[str, Any]
    result: RunResult
    started_wall: float
    timestamp: str
    responses: dict[str, Response] = attrs.field(factory=dict)
    extra_providers: dict[str, Provider] = attrs.field(factory=dict)
    send_events: trio.MemorySendChannel[Event] | None = None
    sessions: Any = None
    """The run's ``SessionStore`` (made by the first ``claude_session`` step)."""

    def session_store(self) -> Any:
        """The run's ``SessionStore`` under the workspace (one per run)."""
        if self.sessions is None:
            from .engine._sessions import SessionStore

            self.sessions = SessionStore(self.workspace)
        return self.sessions

    def template_values(self, step_name: str) -> dict[str, Any]:
        return {
            "execution_id": self.run_id,
            "step": step_name,
            "timestamp": self.timestamp,
            "vars": self.variables,
            "steps": {
                name: {"text": r.text, "output": r.output} for name, r in self.responses.items()
            },
        }

    def handler_context(self, path: str, ref: str) -> HandlerContext:
        return HandlerContext(
            run_id=self.run_id,
            step=path,
            name=ref,
            pipeline=self.spec.name,
            output_dir=str(self.out_root),
            stdout=self.options.stdout,
            stderr=self.options.stderr,
            started_wall=self.started_wall,
            variables=self.variables,
        )

    def now(self) -> float:
        return trio.current_time() - self.run.origin

    async def emit(self, event: Event) -> None:
        """Send a facade-made event (run and python-step events) to the run's event stream."""
        if self.send_events is None:
            return
        try:
            await self.send_events.send(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # nobody listens any more; the run goes on

    def cost_function(self, provider: Provider | None = None) -> Callable[[str | None, Any], float | None] | None:
        """``cost(model, usage)`` for the engine; a ``mock`` provider's calls cost nothing."""
        if provider is not None and getattr(provider, "name", None) == "mock":
            return _free
        try:
            cost_usd = import_object("sluiceway.engine._pricing:cost_usd")
        except RegistryError:
            return None
        overrides = self.spec.defaults.pricing or None

        def cost(model: str | None, usage: Any) -> float | None:
            if model is None:
                return None
            return cost_usd(model, usage, overrides)

        return cost


def _free(model: str | None, usage: Any) -> float:
    return 0.0


# --------------------------------------------------------------------------- the run


class _StepFailed(Exception):
    """Internal: a step failed; the run stops."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(name)
        self.name = name
        self.error = error


class _Executor:
    def __init__(self, state: RunState) -> None:
        self.state = state

    def build_consumers(self, step: Any) -> tuple[list[Any], list[Any]]:
        """Fresh handler instances for *step*, and their engine consumers."""
        state = self.state
        refs = _effective_refs(step, state.spec, state.options)
        handlers: list[Any] = []
        names: list[str] = []
        if refs:
            opts = _effective_opts(step, state.spec, refs, state.options)
            handlers = build_handlers(refs, opts, lambda ref: state.handler_context(step.name, ref))
            names = list(refs)
        plan = state.options.handler_plan
        if plan is not None and state.options.stream and step.stream:
            for handler, name in plan.build(step, state.spec, lambda ref: state.handler_context(step.name, ref)):
                handlers.append(handler)
                names.append(name)
        if state.options.stream and step.stream and os.environ.get(STREAM_DEBUG_ENV) == "1" and "debug" not in refs:
            handlers += build_handlers(["debug"], {"file": "stderr"}, lambda ref: state.handler_context(step.name, ref))
            names.append("debug")
        buffer_size = step.stream_buffer_size or state.spec.defaults.stream_buffer_size
        consumers = [
            _engine_step.HandlerConsumer(
                handler,
                name,
                getattr(handler, "policy", "block"),
                buffer_size or _engine_step.DEFAULT_BUFFER_SIZE,
            )
            for handler, name in zip(handlers, names, strict=True)
        ]
        return handlers, consumers

    def condition_holds(self, step: Any) -> bool:
        condition = self.state.prepared.conditions.get(step.name)
        if condition is None:
            return True
        steps_view = {
            name: {"text": r.text, "output": r.output, "status": "ok"} for name, r in self.state.responses.items()
        }
        for name, res in self.state.result.steps.items():
            steps_view.setdefault(name, {"text": res.text, "output": res.output, "status": res.status})
        return condition.evaluate({"steps": steps_view, "vars": self.state.variables})

    async def run_all(self) -> None:
        state = self.state
        for step in state.spec.steps:
            if step.name in state.result.steps:
                continue  # already ran, as another step's passthrough input
            if not self.condition_holds(step):
                state.result.steps[step.name] = StepResult(status="skipped", type=step.type)
                continue
            await self.run_with_followers(step)

    async def run_with_followers(self, step: Any) -> None:
        state = self.state
        followers = []
        for name in state.prepared.followers.get(step.name, ()):
            follower = next(s for s in state.spec.steps if s.name == name)
            if not self.condition_holds(follower):
                state.result.steps[name] = StepResult(status="skipped", type=follower.type)
                continue
            followers.append(follower)
        if not followers:
            events = None
            if isinstance(step, PythonStep) and step.input_stream is not None:
                # the upstream was skipped: an input stream that ends at once
                send, events = trio.open_memory_channel[Event](0)
                send.close()
            await self.run_one(step, events=events)
            return
        passthrough: list[Any] = []
        inputs: list[tuple[PythonStep, trio.MemoryReceiveChannel[Event]]] = []
        for follower in followers:
            buffer_size = follower.stream_buffer_size or PASSTHROUGH_BUFFER
            send, receive = trio.open_memory_channel[Event](buffer_size)
            passthrough.append(_engine_step.ChannelConsumer(send, "block", buffer_size))
            inputs.append((follower, receive))
        failures: list[_StepFailed] = []

        async def guarded(coro_fn: Callable[[], Awaitable[None]]) -> None:
            try:
                await coro_fn()
            except _StepFailed as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for follower, receive in inputs:
                nursery.start_soon(guarded, lambda f=follower, r=receive: self.run_one(f, events=r))
            await guarded(lambda: self.run_one(step, extra_consumers=passthrough))
        if failures:
            # the upstream's failure (if any) is the run's cause; a follower's comes second
            failures.sort(key=lambda f: f.name != step.name)
            raise failures[0]

    async def run_one(
        self,
        step: Any,
        *,
        extra_consumers: Sequence[Any] = (),
        events: trio.MemoryReceiveChannel[Event] | None = None,
    ) -> None:
        """Run one step, record its ``StepResult``; raise ``_StepFailed`` when it failed."""
        state = self.state
        try:
            handlers, consumers = self.build_consumers(step)
        except (RegistryError, ValueError, TypeError) as exc:
            for consumer in extra_consumers:
                consumer.send_channel.close()
            if events is not None:
                events.close()
            error = StepError(f"stream handler: {exc}", step=step.name)
            error.__cause__ = exc
            state.result.steps[step.name] = StepResult(status="failed", error=error, type=step.type)
            raise _StepFailed(step.name, error) from exc
        state.result.handlers[step.name] = handlers
        state.result.steps[step.name] = StepResult(status="cancelled", type=step.type)  # until it ends
        try:
            if isinstance(step, PythonStep):
                response = await self.run_python(step, handlers, events)
            else:
                runner = STEP_RUNNERS.get(step.type, run_claude_step)
                all_consumers = [*consumers, *extra_consumers]
                timeout_ms = step_options(state, step).timeout_ms
                if timeout_ms is None:
                    response = await runner(state, step, all_consumers)
                else:
                    streamed: list[Any] = []  # the partial response the timeout's cancellation carried
                    try:
                        with trio.fail_after(timeout_ms / 1000):
                            try:
                                response = await runner(state, step, all_consumers)
                            except BaseException as exc:
                                streamed.append(getattr(exc, "partial", None))
                                raise
                    except trio.TooSlowError as exc:
                        error = ProviderTimeoutError(
                            f"the step took longer than timeout_ms={timeout_ms}", step=step.name
                        )
                        error.partial = streamed[0] if streamed else None  # type: ignore[attr-defined]
                        raise error from exc
            output_file = write_output_file(state, step, response) if step.output_to_file else None
        except Exception as exc:
            partial = getattr(exc, "partial", None)
            if isinstance(exc, _OutputFileError):
                partial = exc.response
            state.result.steps[step.name] = StepResult(
                status="failed",
                error=exc,
                type=step.type,
                response=partial if isinstance(partial, Response) else None,
            )
            raise _StepFailed(step.name, exc) from exc
        except BaseException as exc:  # cancelled: keep what it streamed, then let it propagate
            partial = getattr(exc, "partial", None)
            if isinstance(partial, Response):
                state.result.steps[step.name] = StepResult(status="cancelled", type=step.type, response=partial)
            raise
        state.result.steps[step.name] = StepResult(
            status="ok",
            response=response,
            type=step.type,
            output_file=None if output_file is None else str(output_file),
        )
        state.responses[step.name] = response

    async def run_python(
        self, step: PythonStep, handlers: Sequence[Any], events: trio.MemoryReceiveChannel[Event] | None
    ) -> Response:
        """A python step, with StepStarted / terminal events to the run stream and its handlers."""
        state = self.state
        seq = 0

        async def emit(event_type: type[Event], **fields: Any) -> None:
            nonlocal seq
            seq += 1
            event = event_type(run_id=state.run_id, step=step.name, seq=seq, at=state.now(), **fields)
            for handler in handlers:
                try:
                    await handler.handle(event)
                except Exception as exc:  # python steps' handlers: isolated, warned
                    warnings.warn(f"handler {type(handler).__name__} failed: {exc}", RuntimeWarning, stacklevel=1)
            await state.emit(event)

        try:
            await emit(StepStarted, provider="python", model=None, step_type="python")
            try:
                if events is not None:
                    with events:  # closing it tells the upstream nobody listens any more
                        response = await run_python_step(state, step, (), events)
                else:
                    response = await run_python_step(state, step, ())
            except Exception as exc:
                with trio.CancelScope(shield=True):
                    await emit(Failed, error=exc, message=str(exc))
                raise
            except BaseException:
                with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await emit(Cancelled)
                raise
            if response.text:
                # the text as one delta, so deltas concatenate to Done.response.text (invariant 2)
                await emit(Delta, content=response.text, index=0)
                response = attrs.evolve(response, metrics=attrs.evolve(response.metrics, delta_count=1))
            await emit(Done, response=response)
            return response
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                for handler in handlers:
                    try:
                        await handler.aclose()
                    except Exception as exc:
                        warnings.warn(f"handler {type(handler).__name__} failed to close: {exc}", RuntimeWarning, stacklevel=1)


class _OutputFileError(StepError):
    """``output_to_file`` could not be written; the step's response is kept."""

    def __init__(self, message: str, *, step: str, response: Response) -> None:
        super().__init__(message, step=step)
        self.response = response


def write_output_file(state: RunState, step: Any, response: Response) -> Path:
    """Write ``output_to_file`` (relative to the output folder, which it may not escape)."""
    target = Path(step.output_to_file)
    if not target.is_absolute():
        root = state.out_root.resolve()
        target = (root / target).resolve()
        if not target.is_relative_to(root):
            raise _OutputFileError(
                f"output_to_file {step.output_to_file!r} escapes the output folder {str(root)!r}",
                step=step.name,
                response=response,
            )
    text = response.text
    if not text and response.output is not None:
        text = json.dumps(response.output, indent=2, default=str)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _OutputFileError(f"output_to_file {str(target)!r}: {exc}", step=step.name, response=response) from exc
    return target


def _write_run_files(state: RunState) -> None:
    result = state.result
    run_dir = state.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, step in result.steps.items():
        if step.response is None and step.status == "skipped":
            continue
        path = run_dir / f"{_safe_name(name)}.txt"
        text = step.text
        if not text and step.output is not None:  # composite steps: their outputs, in task order
            text = json.dumps(step.output, indent=2, default=str)
        path.write_text(text, encoding="utf-8")
        step.text_file = str(path)
    result.result_file = run_dir / "result.json"
    tmp = run_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result_to_json(result), indent=2, default=str), encoding="utf-8")
    os.replace(tmp, result.result_file)


def _run_finished(state: RunState) -> RunFinished:
    result = state.result
    return RunFinished(
        run_id=result.run_id,
        step="",
        at=state.now(),
        status=result.status,
        summary=result_to_json(result)["steps"],
    )


def _resolve_dirs(spec: Pipeline, options: RunOptions) -> tuple[Path, Path]:
    spec_dir = Path(spec.source).parent if spec.source and spec.source != "<string>" else Path.cwd()
    if options.workspace is not None:
        workspace = Path(options.workspace)
    elif spec.workspace_dir is not None:
        workspace = spec_dir / spec.workspace_dir
    else:
        workspace = spec_dir
    out_root = Path(options.output_dir or spec.output_dir or DEFAULT_OUTPUT_DIR)
    return workspace.resolve(), out_root.resolve()


async def execute(
    spec: Pipeline,
    options: RunOptions = RunOptions(),
    *,
    send_events: trio.MemorySendChannel[Event] | None = None,
    task_status: trio.TaskStatus[RunResult] = trio.TASK_STATUS_IGNORED,
) -> RunResult:
    """Run *spec* to the end and return its ``RunResult`` (never raises for a failed step).

    Steps run in order; a failed step stops the run (``status="failed"``).
    ``send_events``, when given, receives every event (``RunStarted`` ...
    ``RunFinished``) and is closed at the end; a full channel blocks the run
    (backpressure). ``task_status.started(result)`` hands over the live ``RunResult`` (filled in as
    the run goes) once the run has begun.

    Closes: the run's provider(s), every handler (by the engine), ``send_events``.
    Cancelled (or interrupted): running steps get their ``Cancelled`` terminal
    event, handlers are closed, ``result.json`` is written with
    ``status="cancelled"``, then the cancellation propagates.

    Raises:
        SpecError: the spec fails the pre-run checks (conditions, handlers, callables).
        ModeUnavailableError: the mode's provider is not available.
    """
    # the engine's run context: run id, clock origin, run event sink
    RunContext = _engine_step.RunContext  # noqa: N806
    close_events = send_events
    try:
        prepared = prepare(spec, options)
        variables = {**spec.variables, **dict(options.variables)}
        workspace, out_root = _resolve_dirs(spec, options)
        run_id = options.run_id or new_run_id()
        run_dir = out_root / run_id
        provider = open_mode_provider(spec, options)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await provider.aclose()
            raise
    except BaseException:
        if close_events is not None:
            close_events.close()
        raise
    started_wall = time.time()
    origin = trio.current_time()
    result = RunResult(run_id=run_id, pipeline=spec.name, run_dir=run_dir, started_at=started_wall)
    state = RunState(
        spec=spec,
        options=options,
        prepared=prepared,
        run_id=run_id,
        run=RunContext(run_id=run_id, origin=origin, events=send_events),
        provider=provider,
        workspace=workspace,
        out_root=out_root,
        run_dir=run_dir,
        variables=variables,
        result=result,
        started_wall=started_wall,
        timestamp=time.strftime("%Y%m%dT%H%M%S", time.localtime(started_wall)),
        send_events=send_events,
    )
    finished = False
    try:
        task_status.started(result)
        await state.emit(
            RunStarted(run_id=run_id, step="", at=0.0, pipeline=spec.name, steps=tuple(s.name for s in spec.steps))
        )
        try:
            await _Executor(state).run_all()
            result.status = "ok"
        except _StepFailed as failure:
            result.status = "failed"
            result.failed_step = failure.name
            result.error = failure.error
        finished = True
    except Exception as exc:  # a bug, not a step failure: record it, then let it propagate
        result.status = "failed"
        result.error = exc
        raise
    finally:
        if not finished and result.error is None:
            result.status = "cancelled"
            for name, step in result.steps.items():
                if step.status == "cancelled" and result.failed_step is None:
                    result.failed_step = name
        result.duration = trio.current_time() - origin
        try:
            _write_run_files(state)
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                for owned in (*state.extra_providers.values(), provider):
                    try:
                        await owned.aclose()
                    except Exception as exc:  # a failure to close is not a failure of the run
                        warnings.warn(f"provider {owned.name!r} failed to close: {exc}", RuntimeWarning, stacklevel=1)
            if send_events is not None and not finished:
                with send_events, trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await state.emit(_run_finished(state))
    if send_events is not None:
        with send_events:  # the normal end: RunFinished under backpressure like any event
            await state.emit(_run_finished(state))
    return result
