"""Record provider events to a cassette, and replay them on trio's clock.

A cassette is JSON lines. The first line is the header::

    {"sluiceway_cassette": 1, "pipeline": "demo", "provider": "mock"}

then one line per provider event (or error), in the order they happened::

    {"t": 0.0123, "step": "draft", "turn": 0, "attempt": 1, "event": {"type": "text", "index": 0, "text": "Hi"}}
    {"t": 0.5, "step": "draft", "turn": 0, "attempt": 2, "error": {"type": "OverloadedError", "message": "...", "retry_after": 2.0}}

``t`` is seconds since the call was opened (``provider.stream(request)``).
Calls are keyed by ``(step, turn, attempt)``; lines of concurrent calls may
interleave. Event types: ``message_start``, ``block_start``, ``text``,
``thinking``, ``input_json``, ``block_stop``, ``message_delta``,
``message_stop``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

import attrs
import trio
from sluiceway.engine._events import Usage
from sluiceway.engine._protocols import ModelRequest, Provider
from sluiceway.engine._provider_events import (
    BlockStart,
    BlockStop,
    InputJsonChunk,
    MessageDeltaInfo,
    MessageStart,
    MessageStop,
    ProviderEvent,
    TextChunk,
    ThinkingChunk,
)

from sluiceway import _errors
from sluiceway._errors import ProviderError, SpecError, SpecIssue, StepError

__all__ = (
    "CASSETTE_VERSION",
    "Cassette",
    "RecordingProvider",
    "ReplayProvider",
    "event_from_json",
    "event_to_json",
    "load_cassette",
)

#: The cassette format version written in the header.
CASSETTE_VERSION: Final = 1
# instant replay checkpoints this often, so a long cassette stays cancellable
_CHECKPOINT_EVERY: Final = 64

_TAGS: Final[dict[type, str]] = {
    MessageStart: "message_start",
    BlockStart: "block_start",
    TextChunk: "text",
    ThinkingChunk: "thinking",
    InputJsonChunk: "input_json",
    BlockStop: "block_stop",
    MessageDeltaInfo: "message_delta",
    MessageStop: "message_stop",
}
_CLASSES: Final[dict[str, type]] = {tag: cls for cls, tag in _TAGS.items()}

CallKey = tuple[str, int, int]


def event_to_json(event: ProviderEvent) -> dict[str, Any]:
    """Return *event* as a JSON-able dict with a ``type`` tag."""
    out: dict[str, Any] = {"type": _TAGS[type(event)]}
    out.update(attrs.asdict(event))
    return out


def event_from_json(data: Mapping[str, Any]) -> ProviderEvent:
    """Rebuild a provider event from ``event_to_json``'s output.

    Raises:
        ValueError: Unknown type or fields.
    """
    fields = dict(data)
    cls = _CLASSES.get(fields.pop("type", None))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    if isinstance(fields.get("usage"), dict):
        fields["usage"] = Usage(**fields["usage"])
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(f"bad {data['type']} event: {exc}") from None


def _error_to_json(exc: ProviderError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": exc.message, "retry_after": exc.retry_after}


def _error_from_json(data: Mapping[str, Any], step: str) -> ProviderError:
    cls = getattr(_errors, str(data.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, ProviderError)):
        cls = ProviderError
    return cls(str(data.get("message", "")), step=step, retry_after=data.get("retry_after"))


@attrs.frozen
class _Entry:
    t: float
    event: ProviderEvent | None
    error: Mapping[str, Any] | None
    line: int


@attrs.frozen
class Cassette:
    """A loaded cassette: the recorded calls of one pipeline run."""

    path: str
    """Where it was read from."""
    pipeline: str | None
    """The pipeline name in the header."""
    calls: Mapping[CallKey, tuple[_Entry, ...]]
    """``(step, turn, attempt)`` -> the call's entries in order."""
    provider: str | None = None
    """The name of the provider that was recorded (``mock``, ``anthropic``...), if the header says."""

    def events(self, step: str, turn: int = 0, attempt: int = 1) -> list[ProviderEvent]:
        """Return the recorded events of one call (errors left out)."""
        return [e.event for e in self.calls.get((step, turn, attempt), ()) if e.event is not None]

    def text(self, step: str, turn: int = 0, attempt: int = 1) -> str:
        """Return the concatenated text deltas of one call."""
        return "".join(e.text for e in self.events(step, turn, attempt) if isinstance(e, TextChunk))


def _issue(path: str, line: int, message: str) -> SpecError:
    return SpecError([SpecIssue(path, line, None, "", message)])


def load_cassette(path: str | os.PathLike[str], *, pipeline: str | None = None) -> Cassette:
    """Read a cassette; with *pipeline*, check it was recorded for that pipeline.

    Raises:
        SpecError: Not a cassette, another pipeline's, or a corrupted line (file:line).
        OSError: The file cannot be read.
    """
    name = os.fspath(path)
    calls: dict[CallKey, list[_Entry]] = {}
    header: dict[str, Any] | None = None
    with open(name, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise _issue(name, lineno, f"corrupted cassette line: {exc}") from None
            if header is None:
                if not isinstance(data, dict) or "sluiceway_cassette" not in data:
                    raise _issue(name, lineno, "not a sluiceway cassette (no header line)")
                if data["sluiceway_cassette"] != CASSETTE_VERSION:
                    raise _issue(
                        name,
                        lineno,
                        f"cassette version {data['sluiceway_cassette']!r} is not supported (expected {CASSETTE_VERSION})",
                    )
                header = data
                if pipeline is not None and data.get("pipeline") != pipeline:
                    raise _issue(
                        name,
                        lineno,
                        f"cassette was recorded for pipeline {data.get('pipeline')!r}, not {pipeline!r}",
                    )
                continue
            try:
                key = (str(data["step"]), int(data["turn"]), int(data["attempt"]))
                t = float(data["t"])
                if "event" in data:
                    entry = _Entry(t, event_from_json(data["event"]), None, lineno)
                elif isinstance(data.get("error"), dict):
                    entry = _Entry(t, None, data["error"], lineno)
                else:
                    raise ValueError("neither an event nor an error")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise _issue(name, lineno, f"corrupted cassette line: {exc}") from None
            calls.setdefault(key, []).append(entry)
    if header is None:
        raise _issue(name, 1, "empty cassette (no header line)")
    return Cassette(
        name, header.get("pipeline"), {k: tuple(v) for k, v in calls.items()}, provider=header.get("provider")
    )


class RecordingProvider:
    """Wraps a provider and writes every event it yields (and every error) to a cassette.

    Args:
        inner: The provider that makes the calls (it is closed by ``aclose``).
        path: The cassette file, created or truncated at construction.
        pipeline: The pipeline's name, written in the header.
    """

    def __init__(
        self, inner: Provider, path: str | os.PathLike[str], *, pipeline: str | None = None
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.path = Path(path)
        self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in aclose
        self._write({"sluiceway_cassette": CASSETTE_VERSION, "pipeline": pipeline, "provider": inner.name})
        self._file.flush()

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")

    def stream(self, request: ModelRequest) -> _RecordedCall:
        """Open the inner call and record it; same contract as the inner provider's ``stream``."""
        return _RecordedCall(self, request)

    async def aclose(self) -> None:
        """Close the inner provider and the cassette file (idempotent)."""
        try:
            await self.inner.aclose()
        finally:
            file, self._file = self._file, None
            if file is not None:
                file.close()


class _RecordedCall:
    def __init__(self, recorder: RecordingProvider, request: ModelRequest) -> None:
        self._recorder = recorder
        self._request = request
        self._start = trio.current_time()
        self._cm = recorder.inner.stream(request)
        self._key = {"step": request.step, "turn": request.turn, "attempt": request.attempt}
        self._events: AsyncIterator[ProviderEvent] | None = None

    def _record(self, **what: Any) -> None:
        self._recorder._write(
            {"t": round(trio.current_time() - self._start, 6), **self._key, **what}
        )

    async def __aenter__(self) -> _RecordedCall:
        try:
            self._events = await self._cm.__aenter__()
        except ProviderError as exc:
            self._record(error=_error_to_json(exc))
            raise
        return self

    def __aiter__(self) -> _RecordedCall:
        return self

    async def __anext__(self) -> ProviderEvent:
        try:
            assert self._events is not None, "iterate inside 'async with'"
            event = await self._events.__anext__()
        except ProviderError as exc:
            self._record(error=_error_to_json(exc))
            raise
        self._record(event=event_to_json(event))
        return event

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            # the inner call shields and bounds its own close
            return await self._cm.__aexit__(exc_type, exc, tb)  # noqa: ASYNC102
        finally:
            if self._recorder._file is not None:
                self._recorder._file.flush()


class ReplayProvider:
    """Replays a cassette's calls, by ``(step, turn, attempt)``, on trio's clock.

    Args:
        cassette: A path or a loaded ``Cassette``.
        speed: Replay this many times faster than recorded (2.0: twice as fast).
        instant: Replay without sleeping (a checkpoint every 64 events).
        pipeline: When given, the cassette must have been recorded for this pipeline.

    Raises:
        SpecError: A corrupted cassette, or one from another pipeline.
    """

    name = "replay"

    def __init__(
        self,
        cassette: Cassette | str | os.PathLike[str],
        *,
        speed: float = 1.0,
        instant: bool = False,
        pipeline: str | None = None,
    ) -> None:
        if not isinstance(cassette, Cassette):
            cassette = load_cassette(cassette, pipeline=pipeline)
        elif pipeline is not None and cassette.pipeline != pipeline:
            raise _issue(
                cassette.path,
                1,
                f"cassette was recorded for pipeline {cassette.pipeline!r}, not {pipeline!r}",
            )
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.cassette = cassette
        self.recorded_name = cassette.provider
        """The provider that was recorded: a replayed ``mock`` call costs nothing, as it did."""
        self.speed = speed
        self.instant = instant
        self._closed = False

    def stream(self, request: ModelRequest) -> _ReplayedCall:
        """Replay one recorded call; use as ``async with provider.stream(request) as events``.

        Sleeps on trio's clock until each event's recorded offset (divided by
        ``speed``) unless ``instant``; recorded errors are raised as the same
        ``ProviderError`` class, naming ``request.step``. A call the cassette
        does not hold is a ``StepError``. Cancellation interrupts any sleep;
        leaving the block ends the call. Nothing blocks for backpressure.
        """
        if self._closed:
            raise trio.ClosedResourceError("the replay provider is closed")
        key = (request.step, request.turn, request.attempt)
        entries = self.cassette.calls.get(key)
        if entries is None:
            raise StepError(
                f"cassette {self.cassette.path} has no call for turn {request.turn}, attempt {request.attempt}",
                step=request.step,
            )
        return _ReplayedCall(self, request, entries)

    async def aclose(self) -> None:
        """Close the provider (idempotent)."""
        self._closed = True
        await trio.lowlevel.checkpoint()


class _ReplayedCall:
    def __init__(
        self, provider: ReplayProvider, request: ModelRequest, entries: tuple[_Entry, ...]
    ) -> None:
        self._provider = provider
        self._step = request.step
        self._entries = entries
        self._start = trio.current_time()
        self._pos = 0

    async def _wait(self, entry: _Entry) -> None:
        if self._provider.instant:
            if self._pos % _CHECKPOINT_EVERY == 0:
                await trio.lowlevel.checkpoint()
        else:
            await trio.sleep_until(self._start + entry.t / self._provider.speed)

    async def __aenter__(self) -> _ReplayedCall:
        if self._entries and self._entries[0].error is not None:
            await self._wait(self._entries[0])
            raise _error_from_json(self._entries[0].error, self._step)
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __aiter__(self) -> _ReplayedCall:
        return self

    async def __anext__(self) -> ProviderEvent:
        if self._pos >= len(self._entries):
            raise StopAsyncIteration
        entry = self._entries[self._pos]
        await self._wait(entry)
        self._pos += 1
        if entry.error is not None:
            raise _error_from_json(entry.error, self._step)
        assert entry.event is not None
        return entry.event
