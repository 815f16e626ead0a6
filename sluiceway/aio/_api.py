"""``sluiceway.aio``: ``run``, ``open_run`` and ``invoke`` for asyncio callers.

Each call runs the trio API in the loop's trio guest run (``_guest``) and
waits for it from asyncio. Async functions given as handlers are asyncio
coroutines: they run on the loop, as tasks, and the step waits for each.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final

import attrs
import trio

from .. import _api
from .._api import RUN_EVENTS_BUFFER, SpecLike
from .._execution import Mode
from .._handler_sources import HandlersArg, OnEventArg
from .._result import RunResult
from .._select import SelectArg, step_matches
from ..engine import Delta, Event, Response
from ..specs import MockSpec
from ..tools import as_function_tool
from ._guest import GuestRun, Handoff, Job, current_guest, settle, wait_asyncio

__all__ = ("EventStream", "RunHandle", "TextStream", "invoke", "open_run", "run")

#: Batches of events (each at most ``buffer_size``) waiting between the trio side and the
#: asyncio reader. With the run's own channel, the batch the trio side holds and the one
#: being read, at most (HANDOFF_BATCHES + 3) * buffer_size events are in flight.
HANDOFF_BATCHES: Final = 2


class _LoopCallback:
    """An asyncio ``async def`` handler function: each event runs it as a task on the loop.

    The step waits for each call (policy ``block``: backpressure); its
    exceptions are the handler's errors. Cancelled, the task is cancelled.
    """

    policy = "block"

    def __init__(self, function: Callable[[Event], Coroutine[Any, Any, Any]], loop: asyncio.AbstractEventLoop) -> None:
        self._function = function
        self._loop = loop

    async def handle(self, event: Event) -> None:
        """Run the function for *event* on the loop and wait for it (trio side)."""
        await wait_asyncio(self._loop.create_task(self._function(event)))

    async def aclose(self) -> None:
        """Nothing to release."""


def _is_async_function(item: Any) -> bool:
    if isinstance(item, str | type) or callable(getattr(item, "handle", None)):
        return False
    return inspect.iscoroutinefunction(item) or inspect.iscoroutinefunction(
        getattr(item, "__call__", None)  # noqa: B004 - async callable objects
    )


def _on_loop(value: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """*value* (``handlers=`` / ``on_event=``) with its async functions run on *loop*."""
    if isinstance(value, Mapping):
        return {name: _on_loop(item, loop) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_on_loop(item, loop) for item in value]
    return _LoopCallback(value, loop) if _is_async_function(value) else value


def _tools_on_loop(tools: Sequence[Any], loop: asyncio.AbstractEventLoop) -> list[Any]:
    """*tools* with their ``async def`` functions run as tasks on *loop* (their own event loop)."""
    out = []
    for item in tools:
        made = as_function_tool(item)
        if inspect.iscoroutinefunction(made.function):
            function = made.function

            async def on_loop(_function: Any = function, **kwargs: Any) -> Any:
                return await wait_asyncio(loop.create_task(_function(**kwargs)))

            made = attrs.evolve(made, function=functools.wraps(function)(on_loop))
        out.append(made)
    return out


def _hook_on_loop(hook: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """An ``async def`` permission hook run as a task on *loop*."""
    if hook is None or not _is_async_function(hook):
        return hook

    async def on_loop(name: str, input: Any, context: Any) -> Any:
        return await wait_asyncio(loop.create_task(hook(name, input, context)))

    return on_loop


async def _call(make: Callable[[asyncio.AbstractEventLoop], Callable[[], Awaitable[Any]]]) -> Any:
    guest = await current_guest()
    job = guest.start(make(guest.loop))
    await settle(job)
    return job.outcome()


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
    can_use_tool: Any = None,
    cassette: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run a pipeline from asyncio and return its result (``sluiceway.run`` on the loop's trio guest).

    Arguments, result and errors are those of ``sluiceway.run``; async
    functions in ``handlers`` / ``on_event``, async tools and an async
    ``can_use_tool`` run on this loop.

    Closes the run's provider and handlers before returning. Cancelled (the
    task, a timeout), the run is cancelled: the running step gets
    ``Cancelled``, handlers are closed, ``result.json`` says ``cancelled``,
    and only then ``asyncio.CancelledError`` propagates.
    """
    def make(loop: asyncio.AbstractEventLoop) -> Callable[[], Awaitable[RunResult]]:
        return partial(
            _api.run, spec, mode=mode, variables=variables, output_dir=output_dir, workspace=workspace,
            handlers=_on_loop(handlers, loop), on_event=_on_loop(on_event, loop), live_options=live_options,
            tools=_tools_on_loop(tools, loop), can_use_tool=_hook_on_loop(can_use_tool, loop),
            cassette=cassette, record=record, resume=resume,
        )

    result: RunResult = await _call(make)
    return result


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
    can_use_tool: Any = None,
    max_turns: int | None = None,
    output_type: Any = None,
    output_validators: Sequence[Callable[..., Any]] = (),
    output_debounce: float | None = None,
    output_retries: int = 0,
) -> Response:
    """Send one prompt from asyncio and return the ``Response`` (``sluiceway.invoke``).

    Arguments and errors are those of ``sluiceway.invoke``; an ``async def``
    ``on_event`` runs on this loop, and the stream waits for it.

    Closes the provider and handlers before returning. Cancelled, ``on_event``
    receives ``Cancelled`` and then ``asyncio.CancelledError`` propagates.
    """
    def make(loop: asyncio.AbstractEventLoop) -> Callable[[], Awaitable[Response]]:
        return partial(
            _api.invoke, prompt, stream=stream, on_event=_on_loop(on_event, loop),
            handlers=_on_loop(handlers, loop), model=model, mode=mode, mock=mock, system=system,
            max_tokens=max_tokens, tools=_tools_on_loop(tools, loop),
            can_use_tool=_hook_on_loop(can_use_tool, loop), max_turns=max_turns, output_type=output_type,
            output_validators=output_validators, output_debounce=output_debounce, output_retries=output_retries,
        )

    response: Response = await _call(make)
    return response


class EventStream:
    """A run's events on asyncio: ``async for event in run.events``.

    Events come over from trio in batches of what was already waiting; each
    ``__anext__`` within a batch returns without suspending.
    """

    def __init__(self, handoff: Handoff[Event]) -> None:
        self._handoff = handoff
        self._batch: list[Event] = []
        self._next = 0

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        """The next event; waits for one, ``StopAsyncIteration`` after ``RunFinished``."""
        if self._next < len(self._batch):
            event = self._batch[self._next]
            self._next += 1
            return event
        batch = await self._handoff.get()
        if batch is None:
            self._batch, self._next = [], 0
            raise StopAsyncIteration
        self._batch, self._next = batch, 1
        return batch[0]


class TextStream:
    """The text deltas of a run's events, as strings (``run.text_stream()``)."""

    def __init__(self, events: EventStream, step: str | None) -> None:
        self._events = events
        self._step = step

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> str:
        """The next text delta of the chosen step(s)."""
        async for event in self._events:
            if type(event) is Delta and (self._step is None or step_matches(event.step, self._step)):
                return event.content
        raise StopAsyncIteration


class _Stream:
    """What the trio side of an ``open_run`` shares with the asyncio side (one thread)."""

    def __init__(self) -> None:
        self.trio_handle: _api.RunHandle | None = None
        self.result: RunResult | None = None


async def _stream_job(
    spec: SpecLike,
    kwargs: dict[str, Any],
    handoff: Handoff[Event],
    stream: _Stream,
    started: asyncio.Future[None],
) -> RunResult | None:
    """Trio side: run ``sluiceway.open_run`` and hand its events over in batches."""
    try:
        async with _api.open_run(spec, **kwargs) as handle:
            stream.trio_handle = handle
            started.set_result(None)
            events = handle.events
            limit = max(1, int(kwargs["buffer_size"]))
            try:
                async for event in events:
                    batch = [event]
                    while len(batch) < limit:  # what is already waiting; never wait to fill
                        try:
                            batch.append(events.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    await handoff.put(batch)
            finally:
                handoff.close()
    except BaseException as exc:
        if not started.done():
            if isinstance(exc, Exception):
                started.set_exception(exc)
            else:
                started.cancel()
        raise
    finally:
        if stream.trio_handle is not None:
            with trio.CancelScope(shield=True):
                stream.result = await stream.trio_handle.result()  # the block is over: at once
    return stream.result


class RunHandle:
    """A run in progress, from ``sluiceway.aio.open_run``."""

    def __init__(self, run_id: str, events: EventStream, stream: _Stream, job: Job[Any], guest: GuestRun) -> None:
        self.run_id = run_id
        """The run's id."""
        self.events = events
        """The run's events, ``RunStarted`` first and ``RunFinished`` last (those ``select=`` chose)."""
        self._stream = stream
        self._job = job
        self._guest = guest

    @property
    def finished(self) -> bool:
        """True once the run has ended (its result is final)."""
        return self._job.finished.done()

    def cancel(self) -> None:
        """Cancel the run; returns at once. ``events`` goes on to the ``Cancelled``
        events and ``RunFinished``; handlers and the provider are closed."""
        handle = self._stream.trio_handle
        if handle is not None:
            self._guest.run_soon(handle.cancel)

    async def wait(self) -> RunResult:
        """Wait for the run to end and return its ``RunResult``; the events not read are discarded.

        Cancelled, the wait stops (leaving the block then cancels the run).
        """
        async for _ in self.events:
            pass
        await asyncio.shield(self._job.finished)
        return self._result()

    async def result(self) -> RunResult:
        """The run's ``RunResult`` once it has ended (``wait``); at once after the block."""
        if self._job.finished.done():
            return self._result()
        return await self.wait()

    def _result(self) -> RunResult:
        if self._stream.result is None:
            self._job.outcome()  # the run's own error, if it had one
            raise RuntimeError("the run ended without a result")
        return self._stream.result

    def text_stream(self, step: str | None = None) -> TextStream:
        """The text deltas (``Delta.content``) of *step* and its sub-steps, or of every step.

        Reads ``run.events``: use one or the other, not both.
        """
        return TextStream(self.events, step)


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
    can_use_tool: Any = None,
    cassette: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> AsyncIterator[RunHandle]:
    """Start a run from asyncio and stream its events (``sluiceway.open_run`` on the loop's trio guest).

    Usage::

        async with sluiceway.aio.open_run("pipeline.yaml", handlers=[]) as run:
            async for event in run.events:
                ...
            result = await run.result()

    Arguments as for ``sluiceway.open_run``. Backpressure crosses the bridge:
    events come over in batches of what is waiting, at most
    ``HANDOFF_BATCHES`` batches ahead of the reader, so a slow reader slows the
    run and memory stays bounded.

    Leaving the block before the run has ended cancels it promptly (``await
    run.wait()`` first to let it finish); leaving it with an exception or
    being cancelled does the same. Either way the block's exit waits until the
    run's steps got ``Cancelled``, handlers and the provider are closed and
    ``result.json`` is written, then the exception (``CancelledError``)
    propagates unchanged.

    Raises:
        SpecError, ModeUnavailableError, ResumeError: before the block runs.
    """
    guest = await current_guest()
    loop = guest.loop
    handoff: Handoff[Event] = Handoff(loop, HANDOFF_BATCHES)
    stream = _Stream()
    started: asyncio.Future[None] = loop.create_future()
    kwargs = {
        "mode": mode, "variables": variables, "output_dir": output_dir, "workspace": workspace,
        "handlers": _on_loop(handlers, loop), "on_event": _on_loop(on_event, loop), "select": select,
        "buffer_size": buffer_size, "live_options": live_options,
        "tools": _tools_on_loop(tools, loop), "can_use_tool": _hook_on_loop(can_use_tool, loop),
        "cassette": cassette, "record": record, "resume": resume,
    }
    job = guest.start(partial(_stream_job, spec, kwargs, handoff, stream, started))
    try:
        await asyncio.shield(started)  # raises the setup error (SpecError...) as the trio API does
    except BaseException:
        if not job.finished.done():
            job.cancel()
        await settle(job)  # noqa: ASYNC102 - waits out the run's bounded, trio-shielded cleanup
        if started.done() and not started.cancelled():
            started.exception()  # retrieved: what propagates is the error being raised
        raise
    assert stream.trio_handle is not None
    handle = RunHandle(stream.trio_handle.run_id, EventStream(handoff), stream, job, guest)
    try:
        yield handle
    except BaseException:
        job.cancel()
        await settle(job)  # noqa: ASYNC102 - waits out the run's bounded, trio-shielded cleanup
        raise
    if not handoff.exhausted:
        job.cancel()  # left before the run ended: a stream that is closed stops it
    await settle(job)
    if job.error is not None:
        raise job.error
