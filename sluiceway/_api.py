"""The Python API: ``run``, ``run_sync``, ``open_run`` and ``invoke``.

All entry points run on trio (``sluiceway.aio`` has the same API for asyncio
callers). Each run builds its own provider and fresh handler instances and
closes them before it returns, also when cancelled.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from types import SimpleNamespace
from typing import Any, Final

import attrs
import sniffio
import trio

from ._execution import (
    DEFAULT_MODEL,
    DEFAULT_TOOL_TURNS,
    Mode,
    ModeUnavailableError,
    RunOptions,
    execute,
    open_mode_provider,
)
from ._handler_sources import HandlerPlan, HandlersArg, OnEventArg, plan_handlers
from ._load import load
from ._result import RunResult
from ._select import SelectArg, SelectingSendChannel, Selection, step_matches
from .engine import (
    DEFAULT_BUFFER_SIZE,
    Delta,
    Event,
    HandlerConsumer,
    HandlerContext,
    ModelRequest,
    Response,
    RunContext,
    stream_step,
)
from .specs import MockSpec, Pipeline
from .tools import CanUseTool, FunctionTool, OutputSpec, StepTools, as_function_tool

__all__ = ("RunHandle", "TextStream", "invoke", "open_run", "run", "run_sync")

#: Events ``open_run().events`` holds before the run blocks on a slow reader.
RUN_EVENTS_BUFFER: Final = 256
#: Seconds allowed for closing ``invoke``'s provider.
CLOSE_TIMEOUT: Final = 5.0

SpecLike = Pipeline | str | os.PathLike[str]


def _asyncio_hint(name: str) -> str | None:
    """The hint to use ``sluiceway.aio`` when this thread is running asyncio code, else None."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None
    if library != "asyncio":
        return None
    usage = "async with" if name == "open_run" else "await"
    return (
        f"sluiceway.{name}() runs on trio, but it was called from an asyncio event loop: "
        f"use `{usage} sluiceway.aio.{name}(...)` instead"
    )


def _require_trio(name: str) -> None:
    """Fail with a useful message when a trio entry point is awaited on asyncio."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        hint = _asyncio_hint(name)
        if hint is not None:
            raise RuntimeError(hint) from None
        raise


def _load_spec(spec: SpecLike) -> Pipeline:
    if isinstance(spec, Pipeline):
        return spec
    return load(os.fspath(spec))  # the facade's load: handler-option checks on top of specs.load


def _options(
    *,
    mode: Mode,
    variables: Mapping[str, Any] | None,
    output_dir: str | os.PathLike[str] | None,
    workspace: str | os.PathLike[str] | None,
    handlers: HandlersArg,
    on_event: OnEventArg = None,
    live_options: Mapping[str, Any] | None = None,
    **extra: Any,
) -> RunOptions:
    names: tuple[str, ...] | None = None
    if isinstance(handlers, str):
        names = (handlers,)
    elif isinstance(handlers, list | tuple) and all(isinstance(h, str) for h in handlers):
        names = tuple(handlers)  # names only: the --handler path (checked with the spec)
    plan = plan_handlers(None if names is not None else handlers, on_event)
    return RunOptions(
        mode=mode,
        variables=dict(variables or {}),
        output_dir=output_dir,
        workspace=workspace,
        handlers=names,
        handler_plan=plan,
        live_options=dict(live_options or {}),
        **extra,
    )


async def _execute(  # noqa: ASYNC128 - execute() calls task_status.started()
    spec: Pipeline,
    options: RunOptions,
    *,
    send_events: Any = None,
    task_status: trio.TaskStatus[RunResult] = trio.TASK_STATUS_IGNORED,
) -> RunResult:
    """``execute``, then close the caller's handler objects (``handlers=`` / ``on_event=``)."""
    plan: HandlerPlan | None = options.handler_plan
    try:
        return await execute(spec, options, send_events=send_events, task_status=task_status)
    finally:
        if plan is not None:
            await plan.aclose()


async def run(
    spec: SpecLike,
    *,
    mode: Mode = "mock",
    variables: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    handlers: HandlersArg = None,
    on_event: OnEventArg = None,
    live_options: Mapping[str, Any] | None = None,
    tools: Sequence[Any] = (),
    can_use_tool: CanUseTool | None = None,
    cassette: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run a pipeline and return its result; a failed step does not raise.

    Args:
        spec: A ``Pipeline``, or the path of a YAML spec.
        mode: ``mock`` (embedded, no key), ``live`` (Anthropic API) or ``replay``.
        variables: Overrides of the spec's ``variables``.
        output_dir: Where ``<run_id>/result.json`` and the step files go (default ``./outputs``).
        workspace: Where relative prompt files resolve and tools run.
        handlers: Replace the spec's handlers for this run: a handler name or dotted
            path, a handler class, a handler object, a plain or async function (the
            ``callback`` handler), or a list of these, for every streaming step; or a
            mapping ``{step_name: handlers}`` for the named steps only.
        on_event: The same kinds of handlers, added to every streaming step's handlers.
        live_options: ``live`` mode: keyword arguments for its ``AnthropicProvider``
            (``max_starting``, ``streams_per_client``...); an error in any other mode.
        tools: Function tools (``@sluiceway.tool``) every model step offers, besides its own.
        can_use_tool: The permission hook of every model step that names none:
            ``(tool_name, input, context) -> allow() | deny(reason)``, before every tool call.
        cassette: ``replay`` mode: the cassette to replay (``sluiceway run --cassette``).
        record: Record every model call into this cassette (``sluiceway run --record``).
        resume: The folder of an earlier run of this pipeline (``sluiceway run --resume``):
            the batch tasks and model steps it finished whose inputs hash the same are
            replayed from its saved responses (``StepStarted.replayed``), not called
            again. The run is a new run in a new folder; ``result.reused`` says what it
            took over, ``result.requests`` what it called.

    Returns:
        The ``RunResult``: ``status`` is ``ok``, ``failed`` (see ``.error``,
        ``.raise_for_status()``) or ``cancelled``. ``result.handlers[step]`` are the
        step's (closed) handler instances, e.g. a ``buffer`` handler's ``.text()``.

    Closes the run's provider and every handler before returning (a handler
    object you passed: once, at the end). Cancelled, the running step emits
    ``Cancelled``, handlers are closed, ``result.json`` is written with
    ``status: cancelled``, and the cancellation propagates.

    Raises:
        SpecError: the spec is invalid, or a handler name names nothing.
        ModeUnavailableError: the mode's provider is not available.
        ResumeError: *resume* is not a run folder, or a different pipeline's.
        RuntimeError: called from asyncio (use ``sluiceway.aio.run``).
    """
    _require_trio("run")
    options = _options(
        mode=mode, variables=variables, output_dir=output_dir, workspace=workspace, handlers=handlers,
        on_event=on_event, live_options=live_options, tools=_tools(tools), can_use_tool=can_use_tool,
        cassette=os.fspath(cassette) if cassette is not None else None,
        record=os.fspath(record) if record is not None else None,
        resume=os.fspath(resume) if resume is not None else None,
    )
    return await _execute(_load_spec(spec), options)


def run_sync(
    spec: SpecLike,
    *,
    mode: Mode = "mock",
    variables: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    handlers: HandlersArg = None,
    on_event: OnEventArg = None,
    live_options: Mapping[str, Any] | None = None,
    tools: Sequence[Any] = (),
    can_use_tool: CanUseTool | None = None,
    cassette: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> RunResult:
    """``run`` in a fresh ``trio.run``; for scripts and notebooks without an event loop."""
    try:
        return trio.run(
            partial(
                run,
                spec,
                mode=mode,
                variables=variables,
                output_dir=output_dir,
                workspace=workspace,
                handlers=handlers,
                on_event=on_event,
                live_options=live_options,
                tools=tools,
                can_use_tool=can_use_tool,
                cassette=cassette,
                record=record,
                resume=resume,
            )
        )
    except RuntimeError as exc:
        hint = _asyncio_hint("run") if "inside a run" in str(exc) else None
        if hint is None:
            raise
        raise RuntimeError(hint) from exc


class TextStream:
    """The text deltas of a run's event stream, as strings (``run.text_stream()``).

    Reads ``run.events`` (other events are read and skipped). After a
    ``Retrying`` event the retried call's text follows: the failed call's
    (superseded) text was already yielded.
    """

    def __init__(self, events: trio.MemoryReceiveChannel[Event], step: str | None) -> None:
        self._events = events
        self._step = step

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> str:
        """The next text delta; blocks until one arrives or the run's stream ends."""
        while True:
            try:
                event = await self._events.receive()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
            if type(event) is Delta and (self._step is None or step_matches(event.step, self._step)):
                return event.content


@attrs.define(eq=False)
class RunHandle:
    """A run in progress, from ``open_run``."""

    run_id: str
    """The run's id."""
    events: trio.MemoryReceiveChannel[Event]
    """The run's events, ``RunStarted`` first and ``RunFinished`` last (those ``select=`` chose)."""
    _live: RunResult = attrs.field(repr=False)
    _scope: trio.CancelScope = attrs.field(repr=False)
    _done: trio.Event = attrs.field(factory=trio.Event, repr=False)

    @property
    def finished(self) -> bool:
        """True once the run has ended (its result is final)."""
        return self._done.is_set()

    def cancel(self) -> None:
        """Cancel the run; returns at once.

        The running steps get ``Cancelled`` (also on ``events``), handlers and
        the provider are closed, ``result.json`` says ``cancelled``, and
        ``events`` ends after ``RunFinished``. Idempotent; nothing once the run ended.
        """
        self._scope.cancel()

    async def wait(self) -> RunResult:
        """Wait for the run to end and return its ``RunResult``.

        Reads and discards the events of ``events`` that the block has not read
        (so the run is not held up by a full stream). Cancelled, the wait stops;
        the run goes on until the ``open_run`` block is left.
        """
        while True:
            try:
                await self.events.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                break
        await self._done.wait()
        return self._live

    async def result(self) -> RunResult:
        """The run's ``RunResult``, once it has ended (``wait``); at once after the block."""
        if self._done.is_set():
            await trio.lowlevel.checkpoint()
            return self._live
        return await self.wait()

    def text_stream(self, step: str | None = None) -> TextStream:
        """The text deltas (``Delta.content``) of *step* and its sub-steps, or of every step.

        Reads ``run.events``: use one or the other, not both.
        """
        return TextStream(self.events, step)


async def _run_job(  # noqa: ASYNC128 - execute() calls task_status.started()
    spec: Pipeline,
    options: RunOptions,
    send_events: Any,
    scope: trio.CancelScope,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[RunResult] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One ``open_run`` run under *scope* (``RunHandle.cancel``); *done* is set when it ended."""
    try:
        with scope:
            await _execute(spec, options, send_events=send_events, task_status=task_status)
    finally:
        done.set()


@asynccontextmanager
async def open_run(
    spec: SpecLike,
    *,
    mode: Mode = "mock",
    variables: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    handlers: HandlersArg = None,
    on_event: OnEventArg = None,
    select: SelectArg = None,
    buffer_size: int = RUN_EVENTS_BUFFER,
    live_options: Mapping[str, Any] | None = None,
    tools: Sequence[Any] = (),
    can_use_tool: CanUseTool | None = None,
    cassette: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> AsyncIterator[RunHandle]:
    """Start a run in the background and stream its events, like a response stream.

    Usage::

        async with sluiceway.open_run("pipeline.yaml", handlers=[]) as run:
            async for event in run.events:
                ...
            result = await run.result()

    ``handlers``, ``on_event``, ``tools``, ``can_use_tool``, ``cassette``, ``record``, ``resume`` as for
    ``run``; ``handlers=[]`` keeps the spec's
    own handlers quiet while you read. ``select`` (step names, each with its
    sub-steps, and/or ``Event`` classes) chooses the events ``run.events``
    gets; the others never enter it.

    Backpressure: ``run.events`` holds ``buffer_size`` events; a reader
    slower than that slows the run down (nothing selected is dropped).

    Leaving the block before the run has ended cancels it promptly (``await
    run.wait()`` first to let it finish): the running step gets ``Cancelled``,
    handlers and the provider are closed, ``result.json`` says ``cancelled``.
    Leaving it with an exception, or being cancelled, does the same and the
    exception propagates unchanged. The events channel is closed on exit
    either way, and ``await run.result()`` then returns the final result.

    Raises:
        SpecError, ModeUnavailableError, ResumeError: before the block runs.
        RuntimeError: called from asyncio (use ``sluiceway.aio.open_run``).
    """
    _require_trio("open_run")
    options = _options(
        mode=mode, variables=variables, output_dir=output_dir, workspace=workspace, handlers=handlers,
        on_event=on_event, live_options=live_options, tools=_tools(tools), can_use_tool=can_use_tool,
        cassette=os.fspath(cassette) if cassette is not None else None,
        record=os.fspath(record) if record is not None else None,
        resume=os.fspath(resume) if resume is not None else None,
    )
    selection = Selection.parse(select)
    loaded = _load_spec(spec)
    send_channel, receive_events = trio.open_memory_channel[Event](buffer_size)
    send_events: Any = send_channel if selection is None else SelectingSendChannel(send_channel, selection)
    scope = trio.CancelScope()
    done = trio.Event()
    body_error: BaseException | None = None
    setup_error: BaseException | None = None
    with receive_events:
        async with trio.open_nursery() as nursery:
            try:
                live: RunResult = await nursery.start(
                    partial(_run_job, loaded, options, send_events, scope, done)
                )
            except BaseException as exc:  # noqa: ASYNC103 - re-raised below, outside the nursery
                setup_error = exc  # SpecError, ModeUnavailableError...: not wrapped in a group
            else:
                handle = RunHandle(live.run_id, receive_events, live, scope, done)
                try:
                    yield handle
                except BaseException as exc:  # noqa: ASYNC103 - re-raised below, outside the nursery
                    # (so the caller never sees an ExceptionGroup wrapping its own error)
                    body_error = exc
                    receive_events.close()  # nobody reads any more: the run must not wait on a full channel
                    nursery.cancel_scope.cancel()
                else:
                    if receive_events.statistics().open_send_channels:
                        # left before the run ended: a stream that is closed stops it
                        receive_events.close()
                        scope.cancel()
                    else:
                        receive_events.close()  # the run is over: what was not read is discarded
    if setup_error is not None:
        while isinstance(setup_error, BaseExceptionGroup) and len(setup_error.exceptions) == 1:
            setup_error = setup_error.exceptions[0]
        raise setup_error
    if body_error is not None:
        raise body_error


def _tools(tools: Sequence[Any]) -> tuple[FunctionTool, ...]:
    """The ``tools=`` argument as function tools (plain functions are made tools)."""
    if isinstance(tools, str) or not isinstance(tools, Sequence):
        raise TypeError(f"tools must be a list of @sluiceway.tool functions, got {tools!r}")
    return tuple(as_function_tool(t) for t in tools)


def _mock_spec(mock: MockSpec | Mapping[str, Any] | str | None) -> MockSpec | None:
    if mock is None or isinstance(mock, MockSpec):
        return mock
    if isinstance(mock, str):
        return MockSpec(response=mock)
    return MockSpec(**dict(mock))


async def invoke(
    prompt: str,
    *,
    stream: bool = True,
    on_event: OnEventArg = None,
    handlers: OnEventArg = None,
    model: str | None = None,
    mode: Mode = "mock",
    mock: MockSpec | Mapping[str, Any] | str | None = None,
    system: str | None = None,
    max_tokens: int = 4096,
    tools: Sequence[Any] = (),
    can_use_tool: CanUseTool | None = None,
    max_turns: int | None = None,
    output_type: Any = None,
    output_validators: Sequence[Callable[..., Any]] = (),
    output_debounce: float | None = None,
    output_retries: int = 0,
) -> Response:
    """Send one prompt and return the ``Response`` (the seeds' ``LLM.invoke!``).

    Args:
        prompt: The user message.
        stream: With ``True``, ``on_event`` receives every event as it arrives.
        on_event: A sync or async callable called once per event, in order
            (``StepStarted``, ``Delta``... ``Done``), or a handler (name, class,
            object) or a list of these. Its exceptions fail the call. A slow
            ``on_event`` slows the stream (backpressure; nothing is dropped).
        handlers: The same kinds of handlers, attached before ``on_event``'s.
        model: The model (default ``claude-sonnet-4-5``).
        mode: ``mock`` (default, no key) or ``live``.
        mock: Scripts the mock provider: a ``MockSpec``, its fields as a dict, or the response text.
        tools: Function tools (``@sluiceway.tool``) the model may call, in a tool-use loop.
        can_use_tool: The permission hook, asked before every tool call.
        max_turns: The most model calls (default: 10 with tools, else 1 plus ``output_retries``).
        output_type: An attrs class, a ``TypedDict`` or a JSON Schema: the model must
            answer through a forced tool whose input is that type; its input streams as
            ``PartialOutput`` events and, validated, is ``Response.output``.
        output_validators: ``validator(value, *, partial) -> value``, called on each
            partial value (``partial=True``) and on the final one; the final's errors fail the call.
        output_debounce: Seconds between ``PartialOutput`` events at least.
        output_retries: Times a final output that fails validation is sent back to the model.

    Raises:
        ProviderError: the call failed (after ``on_event`` saw ``Failed``).
        ValueError: ``on_event`` or ``handlers`` given with ``stream=False``.
        RuntimeError: called from asyncio (use ``sluiceway.aio.invoke``).

    Closes the provider and the handlers before returning. Cancelled,
    ``on_event`` receives ``Cancelled`` and the cancellation propagates.
    """
    _require_trio("invoke")
    if not stream and on_event is not None:
        raise ValueError("on_event needs stream=True")
    if not stream and handlers is not None:
        raise ValueError("handlers need stream=True")
    if mode == "replay":
        raise ModeUnavailableError(
            "invoke runs one prompt with no recording to replay: use mode='mock' or 'live', "
            "or replay a pipeline's cassette with run(spec, mode='replay', cassette=FILE)"
        )
    plan = plan_handlers(handlers, on_event)
    provider = open_mode_provider(Pipeline(name="invoke", steps=()), RunOptions(mode=mode))
    run_id = f"invoke_{secrets.token_hex(4)}"
    try:
        run_context = RunContext(run_id=run_id, origin=trio.current_time())
        consumers = []
        if plan is not None:
            built = plan.build(SimpleNamespace(name="invoke"), None, lambda ref: HandlerContext(run_id=run_id, step="invoke", name=ref))
            consumers = [
                HandlerConsumer(
                    handler, name, getattr(handler, "policy", "block"), DEFAULT_BUFFER_SIZE
                )
                for handler, name in built
            ]
        function_tools = _tools(tools)
        runner = StepTools(step="invoke", functions=function_tools, can_use_tool=can_use_tool) if function_tools else None
        output = None
        if output_type is not None:
            output = OutputSpec.of(
                output_type, validators=output_validators, debounce=output_debounce, retries=output_retries
            )
        offered = runner.definitions() if runner is not None else ()
        extra: dict[str, Any] = {}
        if output is not None:
            offered = (*offered, output.definition())
            extra["tool_choice"] = {"type": "any"} if runner is not None else {"type": "tool", "name": output.tool_name}
        if max_turns is None:
            max_turns = DEFAULT_TOOL_TURNS if runner is not None else 1 + (output.retries if output else 0)
        request = ModelRequest(
            step="invoke",
            model=model or DEFAULT_MODEL,
            messages=({"role": "user", "content": prompt},),
            system=system,
            max_tokens=max_tokens,
            tools=tuple(offered),
            mock=_mock_spec(mock),
            extra=extra,
        )
        return await stream_step(
            run=run_context,
            path="invoke",
            provider=provider,
            request=request,
            consumers=consumers,
            step_type="llm",
            on_handler_error="fail",
            tool_runner=runner,
            max_turns=max_turns,
            output=output,
        )
    finally:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await provider.aclose()
        if plan is not None:
            await plan.aclose()
