"""``run_virtual``: run a whole pipeline on trio's virtual clock.

Under ``trio.testing.MockClock(autojump_threshold=0)`` every sleep (mock
pacing, time to first token, deadlines, retry backoff, replay delays) ends as
soon as nothing else can run, so a pipeline that streams for ten simulated
minutes finishes in milliseconds, and every metric (``time_to_first_token``,
``duration``...) is exact virtual time.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import trio
import trio.testing

from .._api import _load_spec
from .._execution import Mode, RunOptions, execute
from .._result import RunResult
from ..engine import Event
from ._recorder import StreamingRecorder

__all__ = ("VirtualRunner", "arun_virtual", "run_virtual")

#: Events the recorder's feed channel holds before the run waits for it (it never blocks long).
_RECORDER_BUFFER = 256


def refuse_inside_trio(message: str) -> None:
    """Raise ``RuntimeError(message)`` when called from inside a running trio loop.

    The kit's sync entry points start their own ``trio.run``; nested, they would fail
    with a less helpful error.
    """
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return
    raise RuntimeError(message)


def run_virtual(
    spec: Any,
    *,
    mode: Mode = "mock",
    cassette: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
    handlers: str | Sequence[str] | None = None,
    recorder: StreamingRecorder | None = None,
    variables: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    stream: bool = True,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> RunResult:
    """Run *spec* to the end in a fresh ``trio.run`` on a virtual clock and return its result.

    The run uses the facade (``sluiceway.run``'s executor) unchanged, only the
    clock is ``MockClock(autojump_threshold=0)``: sleeps take no real time, and
    metrics are in virtual seconds, exact to the scripted delays.

    Args:
        spec: A ``Pipeline`` or the path of a YAML spec.
        mode: ``mock`` (default) or ``replay`` (with *cassette*); ``live`` works but
            real network waits are not virtual.
        cassette: The cassette file for ``replay`` mode (replayed at its recorded
            pace, which costs no real time here).
        record: Record the run's provider events into this cassette file.
        handlers: Handler names or dotted paths replacing every streaming step's
            handlers (as ``sluiceway run --handler``).
        recorder: A ``StreamingRecorder`` that receives every event of the run
            (``RunStarted`` ... ``RunFinished``), in order; closed at the end.
        variables: Overrides of the spec's ``variables``.
        output_dir: Where ``<run_id>/result.json`` goes; default a new temporary folder.
        workspace: Where prompt files resolve and tools run.
        stream: ``False`` attaches no handlers (results are still collected).
        stdout: Where console handlers write (e.g. an ``io.StringIO``).
        stderr: Where diagnostics go.

    Returns:
        The ``RunResult`` (``result.steps[name].response.metrics`` in virtual time).

    Raises:
        RuntimeError: when called inside a running trio loop; ``await arun_virtual(...)`` there.
        SpecError: the spec is invalid.
    """
    refuse_inside_trio(
        "run_virtual starts its own trio.run with a virtual clock; inside async code "
        "(e.g. a pytest-trio test) use `await arun_virtual(...)` instead"
    )
    options = RunOptions(
        mode=mode,
        variables=dict(variables or {}),
        output_dir=output_dir if output_dir is not None else tempfile.mkdtemp(prefix="sluiceway-virtual-"),
        workspace=workspace,
        handlers=(handlers,) if isinstance(handlers, str) else None if handlers is None else tuple(handlers),
        stream=stream,
        stdout=stdout,
        stderr=stderr,
        cassette=None if cassette is None else os.fspath(cassette),
        record=None if record is None else os.fspath(record),
    )
    loaded = _load_spec(spec)
    return trio.run(
        functools.partial(_run, loaded, options, recorder),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )


async def arun_virtual(spec: Any, **kwargs: Any) -> RunResult:
    """``run_virtual`` from async code: the virtual run goes in a worker thread.

    A trio run has one clock, so the virtual run cannot share the caller's; it
    runs in its own ``trio.run`` in a thread, and this waits for it (cancelling
    the wait does not stop the virtual run, which finishes in moments).
    Takes the same arguments as ``run_virtual``.
    """
    return await trio.to_thread.run_sync(functools.partial(run_virtual, spec, **kwargs))


async def _run(spec: Any, options: RunOptions, recorder: StreamingRecorder | None) -> RunResult:
    if recorder is None:
        return await execute(spec, options)
    send_events, receive_events = trio.open_memory_channel[Event](_RECORDER_BUFFER)

    async def record() -> None:
        with receive_events:
            try:
                async for event in receive_events:
                    await recorder.handle(event)
            finally:
                with trio.CancelScope(shield=True):
                    await recorder.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(record)
        # execute closes send_events at the end: the recorder then sees end-of-stream
        result = await execute(spec, options, send_events=send_events)
    return result


class VirtualRunner:
    """What the ``virtual_run`` pytest fixture gives: ``run_virtual`` with test defaults.

    Calls default ``output_dir`` to the test's ``tmp_path`` and ``recorder`` to
    the test's ``recorder`` fixture; pass either explicitly to override.
    ``runner(spec, ...)`` works in sync tests, ``await runner.arun(spec, ...)``
    in async (pytest-trio) tests.
    """

    def __init__(self, *, output_dir: str | os.PathLike[str], recorder: StreamingRecorder | None) -> None:
        self.output_dir = output_dir
        """The default output folder."""
        self.recorder = recorder
        """The default recorder (the ``recorder`` fixture)."""

    def _defaults(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.setdefault("output_dir", self.output_dir)
        kwargs.setdefault("recorder", self.recorder)
        return kwargs

    def __call__(self, spec: Any, **kwargs: Any) -> RunResult:
        """``run_virtual(spec, **kwargs)`` with this runner's defaults."""
        return run_virtual(spec, **self._defaults(kwargs))

    async def arun(self, spec: Any, **kwargs: Any) -> RunResult:
        """``arun_virtual(spec, **kwargs)`` with this runner's defaults."""
        return await arun_virtual(spec, **self._defaults(kwargs))
