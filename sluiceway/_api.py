"""The Python API: ``run``, ``run_sync``, ``open_run`` and ``invoke``.

All entry points run on trio. Each run builds its own provider and fresh
handler instances and closes them before it returns, also when cancelled.
"""

from __future__ import annotations

import inspect
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final

import attrs
import trio

from ._execution import DEFAULT_MODEL, Mode, RunOptions, execute, open_mode_provider
from ._load import load
from ._result import RunResult
from .engine import (
    DEFAULT_BUFFER_SIZE,
    Event,
    HandlerConsumer,
    ModelRequest,
    Response,
    RunContext,
    stream_step,
)
from .specs import MockSpec, Pipeline

__all__ = ("RunHandle", "invoke", "open_run", "run", "run_sync")

#: Events ``open_run().events`` holds before the run blocks on a slow reader.
RUN_EVENTS_BUFFER: Final = 256
#: Seconds allowed for closing ``invoke``'s provider.
CLOSE_TIMEOUT: Final = 5.0

SpecLike = Pipeline | str | os.PathLike[str]


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
    handlers: str | Sequence[str] | None,
    live_options: Mapping[str, Any] | None = None,
    **extra: Any,
) -> RunOptions:
    if isinstance(handlers, str):
        handlers = (handlers,)
    return RunOptions(
        mode=mode,
        variables=dict(variables or {}),
        output_dir=output_dir,
        workspace=workspace,
        handlers=None if handlers is None else tuple(handlers),
        live_options=dict(live_options or {}),
        **extra,
    )


async def run(
    spec: SpecLike,
    *,
    mode: Mode = "mock",
    variables: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    handlers: str | Sequence[str] | None = None,
    live_options: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run a pipeline and return its result; a failed step does not raise.

    Args:
        spec: A ``Pipeline``, or the path of a YAML spec.
        mode: ``mock`` (embedded, no key), ``live`` (Anthropic API) or ``replay``.
        variables: Overrides of the spec's ``variables``.
        output_dir: Where ``<run_id>/result.json`` and the step files go (default ``./outputs``).
        workspace: Where relative prompt files resolve and tools run.
        handlers: Handler name(s) or dotted path(s) replacing every streaming step's handlers.
        live_options: ``live`` mode: keyword arguments for its ``AnthropicProvider``
            (``max_starting``, ``streams_per_client``...); an error in any other mode.

    Returns:
        The ``RunResult``: ``status`` is ``ok``, ``failed`` (see ``.error``,
        ``.raise_for_status()``) or ``cancelled``. ``result.handlers[step]`` are the
        step's (closed) handler instances, e.g. a ``buffer`` handler's ``.text()``.

    Closes the run's provider and every handler before returning. Cancelled,
    the running step emits ``Cancelled``, handlers are closed, ``result.json``
    is written with ``status: cancelled``, and the cancellation propagates.

    Raises:
        SpecError: the spec is invalid.
        ModeUnavailableError: the mode's provider is not available.
    """
    options = _options(
        mode=mode, variables=variables, output_dir=output_dir, workspace=workspace, handlers=handlers,
        live_options=live_options,
    )
    return await execute(_load_spec(spec), options)


def run_sync(
    spec: SpecLike,
    *,
    mode: Mode = "mock",
    variables: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    handlers: str | Sequence[str] | None = None,
    live_options: Mapping[str, Any] | None = None,
) -> RunResult:
    """``run`` in a fresh ``trio.run``; for scripts and notebooks without an event loop."""
    return trio.run(
        partial(
            run,
            spec,
            mode=mode,
            variables=variables,
            output_dir=output_dir,
            workspace=workspace,
            handlers=handlers,
            live_options=live_options,
        )
    )


@attrs.define
class RunHandle:
    """A run in progress, from ``open_run``."""

    run_id: str
    """The run's id."""
    events: trio.MemoryReceiveChannel[Event]
    """Every event of the run, ``RunStarted`` first and ``RunFinished`` last."""
    result: RunResult | None = None
    """The run's result, set when the ``async with`` block has exited."""


@asynccontextmanager
async def open_run(
    spec: SpecLike,
    *,
    mode: Mode = "mock",
    variables: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    handlers: str | Sequence[str] | None = None,
    buffer_size: int = RUN_EVENTS_BUFFER,
    live_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[RunHandle]:
    """Start a run in the background; ``async for event in handle.events`` sees every event.

    Usage::

        async with sluiceway.open_run("pipeline.yaml") as run:
            async for event in run.events:
                ...
        print(run.result.status)

    Backpressure: ``handle.events`` holds ``buffer_size`` events; a reader
    slower than that slows the run down (nothing is dropped).

    Leaving the block normally waits for the run to finish (events not read are
    discarded), then ``handle.result`` is set. Leaving it with an exception, or
    being cancelled, cancels the run: the running step gets ``Cancelled``,
    handlers and the provider are closed, ``result.json`` says ``cancelled``.
    The events channel is closed on exit either way.
    """
    options = _options(
        mode=mode, variables=variables, output_dir=output_dir, workspace=workspace, handlers=handlers,
        live_options=live_options,
    )
    loaded = _load_spec(spec)
    send_events, receive_events = trio.open_memory_channel[Event](buffer_size)
    body_error: BaseException | None = None
    setup_error: BaseException | None = None
    with receive_events:
        async with trio.open_nursery() as nursery:
            try:
                live: RunResult = await nursery.start(
                    partial(execute, loaded, options, send_events=send_events)
                )
            except BaseException as exc:  # noqa: ASYNC103 - re-raised below, outside the nursery
                setup_error = exc  # SpecError, ModeUnavailableError...: not wrapped in a group
            else:
                handle = RunHandle(live.run_id, receive_events)
                try:
                    yield handle
                except BaseException as exc:  # noqa: ASYNC103 - re-raised below, outside the nursery
                    # (so the caller never sees an ExceptionGroup wrapping its own error)
                    body_error = exc
                    receive_events.close()  # nobody reads any more: the run must not wait on a full channel
                    nursery.cancel_scope.cancel()
                else:
                    # the body is done: let the run finish, discarding what it did not read
                    async for _ in receive_events:
                        pass
                handle.result = live  # filled in by the run, also when it was cancelled
    if setup_error is not None:
        while isinstance(setup_error, BaseExceptionGroup) and len(setup_error.exceptions) == 1:
            setup_error = setup_error.exceptions[0]
        raise setup_error
    if body_error is not None:
        raise body_error


class _OnEvent:
    """Adapts a sync or async ``on_event`` function to the Handler protocol."""

    policy = "block"

    def __init__(self, fn: Callable[[Event], Any | Awaitable[Any]]) -> None:
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )

    async def handle(self, event: Event) -> None:
        value = self._fn(event)
        if self._is_async or inspect.isawaitable(value):
            await value

    async def aclose(self) -> None:
        pass


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
    on_event: Callable[[Event], Any | Awaitable[Any]] | None = None,
    model: str | None = None,
    mode: Mode = "mock",
    mock: MockSpec | Mapping[str, Any] | str | None = None,
    system: str | None = None,
    max_tokens: int = 4096,
) -> Response:
    """Send one prompt and return the ``Response`` (the seeds' ``LLM.invoke!``).

    Args:
        prompt: The user message.
        stream: With ``True``, ``on_event`` receives every event as it arrives.
        on_event: A sync or async callable; called once per event, in order
            (``StepStarted``, ``Delta``... ``Done``). Its exceptions fail the call.
            A slow ``on_event`` slows the stream (backpressure; nothing is dropped).
        model: The model (default ``claude-sonnet-4-5``).
        mode: ``mock`` (default, no key) or ``live``.
        mock: Scripts the mock provider: a ``MockSpec``, its fields as a dict, or the response text.

    Raises:
        ProviderError: the call failed (after ``on_event`` saw ``Failed``).
        ValueError: ``on_event`` given with ``stream=False``.

    Closes the provider before returning. Cancelled, ``on_event`` receives
    ``Cancelled`` and the cancellation propagates.
    """
    if on_event is not None and not stream:
        raise ValueError("on_event needs stream=True")
    provider = open_mode_provider(Pipeline(name="invoke", steps=()), RunOptions(mode=mode))
    run_id = f"invoke_{secrets.token_hex(4)}"
    try:
        run_context = RunContext(run_id=run_id, origin=trio.current_time())
        consumers = []
        if on_event is not None:
            consumers.append(
                HandlerConsumer(
                    _OnEvent(on_event), "on_event", "block", DEFAULT_BUFFER_SIZE
                )
            )
        request = ModelRequest(
            step="invoke",
            model=model or DEFAULT_MODEL,
            messages=({"role": "user", "content": prompt},),
            system=system,
            max_tokens=max_tokens,
            mock=_mock_spec(mock),
        )
        return await stream_step(
            run=run_context,
            path="invoke",
            provider=provider,
            request=request,
            consumers=consumers,
            step_type="llm",
            on_handler_error="fail",
        )
    finally:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await provider.aclose()
