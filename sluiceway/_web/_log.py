"""A run's events for the web view: an append-only log that each client follows at its own pace.

Why a log and not a channel per client: the run must never wait for a browser.
The run's event stream feeds one task (``log_actor``) that only appends to the
log, so the run waits for nothing but that append; each SSE client keeps its
own index into the log and reads on whenever its connection takes more.

The bound: the log holds the run's events and nothing more, so it grows with
the run as ``result.json`` and the run's responses do; clients add nothing to
it (an index each). A lagging client reads what has piled up in slices of at
most ``FRAME_BATCH`` events, with consecutive text deltas of one step and
attempt merged into one frame (``frames``), so a slow browser gets fewer,
larger messages, never a gap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import trio

from ..engine import (
    Cancelled,
    Delta,
    Done,
    Event,
    Failed,
    Response,
    RunFinished,
    RunStarted,
    StepStarted,
    Usage,
)
from ..handlers import event_from_dict, event_to_dict

__all__ = ("EVENTS_FILE", "FRAME_BATCH", "RunLog", "frames", "log_actor")

#: The file ``--web`` writes into the run's folder: one event per line (``event_to_dict``).
EVENTS_FILE: Final = "events.jsonl"
#: The most events one client reads (and coalesces) in one pass; keeps a pass short for the loop.
FRAME_BATCH: Final = 512


class RunLog:
    """One run's events, in order, as the web view serves them; ``id`` of an event is its index."""

    def __init__(self, run_id: str, pipeline: str = "", *, cancel: Callable[[], None] | None = None) -> None:
        self.run_id = run_id
        """The run's id (the URL's ``{id}``)."""
        self.pipeline = pipeline
        """The pipeline's name, once ``RunStarted`` said it."""
        self.events: list[Event] = []
        """Every event so far."""
        self.finished = False
        """True once the run's stream ended: nothing more will be appended."""
        self.cancel = cancel
        """Cancels the run (its cancel scope); ``None`` for a run that is not live."""
        self.clients = 0
        """SSE clients following this log now."""
        self._changed: trio.Event | None = None

    @property
    def status(self) -> str:
        """``running``, or ``RunFinished``'s status (``ended`` when the stream ended without one)."""
        if self.events and isinstance(self.events[-1], RunFinished):
            return self.events[-1].status
        return "ended" if self.finished else "running"

    def append(self, event: Event) -> None:
        """Add *event* and wake the clients waiting for it. Never blocks."""
        if isinstance(event, RunStarted):
            self.pipeline = event.pipeline
        self.events.append(event)
        self._wake()

    def extend(self, events: Sequence[Event]) -> None:
        """Add *events*, in order, and wake the waiting clients once."""
        for event in events:
            if isinstance(event, RunStarted):
                self.pipeline = event.pipeline
        self.events.extend(events)
        self._wake()

    def finish(self) -> None:
        """Say the stream ended; waiting clients wake to send ``end``."""
        self.finished = True
        self.cancel = None
        self._wake()

    async def wait_beyond(self, index: int) -> None:
        """Wait until an event with id > *index* exists or the log is finished. Cancellable."""
        while len(self.events) <= index + 1 and not self.finished:
            await self._wait_change()

    async def wait_finished(self) -> None:
        """Wait until the stream ended. Cancellable."""
        while not self.finished:
            await self._wait_change()

    async def wait_no_clients(self) -> None:
        """Wait until no SSE client follows the log. Cancellable."""
        while self.clients:
            await self._wait_change()

    async def wait_for_client(self) -> None:
        """Wait until at least one SSE client follows the log. Cancellable."""
        while not self.clients:
            await self._wait_change()

    def client_joined(self) -> None:
        """Count a client in (wakes ``wait_for_client``)."""
        self.clients += 1
        self._wake()

    def client_left(self) -> None:
        """Count a client out (wakes ``wait_no_clients``)."""
        self.clients -= 1
        self._wake()

    async def _wait_change(self) -> None:
        if self._changed is None:
            self._changed = trio.Event()
        await self._changed.wait()

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def write_jsonl(self, path: Path) -> None:
        """Write every event, one JSON object a line (the ``file`` handler's ``jsonl`` shape)."""
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for event in self.events:
                out.write(json.dumps(event_to_dict(event), default=str) + "\n")
        tmp.replace(path)

    @classmethod
    def from_run_dir(cls, run_dir: Path) -> RunLog:
        """A finished run's log from its folder: ``events.jsonl`` when ``--web`` wrote one, else a
        result-only view made from ``result.json`` (each step's status, final text and usage).

        Raises:
            OSError, ValueError: neither file is there and readable.
        """
        events_file = run_dir / EVENTS_FILE
        if events_file.is_file():
            events = [
                event_from_dict(json.loads(line))
                for line in events_file.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
            log = cls(events[0].run_id if events else run_dir.name)
        else:
            data = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
            log = cls(str(data.get("run_id", run_dir.name)))
            events = _result_events(data)
        log.extend(events)
        log.finish()
        return log


def _result_events(data: dict[str, Any]) -> list[Event]:
    """The events a result-only view shows: per step a start, its whole text, and its end."""
    run_id = str(data.get("run_id", ""))
    duration = float(data.get("duration") or 0.0)
    events: list[Event] = [
        RunStarted(
            run_id=run_id, step="", pipeline=str(data.get("pipeline", "")),
            steps=tuple(data.get("steps", {})), started_wall=float(data.get("started_at") or 0.0),
        )
    ]
    for name, step in (data.get("steps") or {}).items():
        common = {"run_id": run_id, "step": name}
        events.append(StepStarted(**common, seq=1, provider="", model=step.get("model"), step_type=step.get("type", "")))
        text = step.get("text") or ""
        if text:
            events.append(Delta(**common, seq=2, content=text))
        usage = Usage(**{k: int(v) for k, v in (step.get("usage") or {}).items() if k in _USAGE_FIELDS})
        response = Response(text=text, usage=usage, cost_usd=step.get("cost_usd"), model=step.get("model"))
        status = step.get("status")
        if status == "ok":
            events.append(Done(**common, seq=3, response=response))
        elif status == "cancelled":
            events.append(Cancelled(**common, seq=3, partial=response))
        elif status == "failed":
            message = str(step.get("error") or "failed")
            events.append(Failed(**common, seq=3, error=RuntimeError(message), message=message, partial=response))
    status = data.get("status")
    events.append(
        RunFinished(
            run_id=run_id, step="", at=duration,
            status=status if status in ("ok", "failed", "cancelled") else "failed",
        )
    )
    return events


_USAGE_FIELDS: Final = frozenset(
    ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
)


def encode(event: Event) -> dict[str, Any]:
    """The JSON object the page receives for *event*: ``event_to_dict`` without whole messages
    (a ``Done`` repeats every message the page has already seen as deltas)."""
    data = event_to_dict(event)
    for key in ("response", "partial"):
        value = data.get(key)
        if isinstance(value, dict):
            value.pop("messages", None)
    if isinstance(event, Failed):
        data["error_type"] = type(event.error).__name__
    return data


def frames(events: Sequence[Event], start: int) -> list[tuple[int, dict[str, Any]]]:
    """``(id, data)`` frames for ``events`` (whose first has id *start*).

    Consecutive ``Delta``s of one step, attempt and block are merged into one
    frame whose ``content`` is theirs concatenated and whose id is the last
    one's: a client resuming after that id misses nothing and repeats nothing.
    """
    out: list[tuple[int, dict[str, Any]]] = []
    previous: Delta | None = None
    for offset, event in enumerate(events):
        index = start + offset
        if (
            type(event) is Delta
            and previous is not None
            and event.step == previous.step
            and event.attempt == previous.attempt
            and event.index == previous.index
        ):
            _, data = out[-1]
            data["content"] += event.content
            data["seq"] = event.seq
            data["at"] = event.at
            out[-1] = (index, data)
        else:
            out.append((index, encode(event)))
        previous = event if type(event) is Delta else None
    return out


async def log_actor(receive_events: trio.MemoryReceiveChannel[Event], log: RunLog) -> None:
    """Append the run's events to *log* until the stream ends, then finish it.

    Takes what is already waiting without a checkpoint per event, and awaits
    only an empty channel: the run waits on nothing slower than an append.
    Closes *receive_events*; cancelled, the log is finished all the same.
    """
    with receive_events:
        try:
            while True:
                try:
                    batch = [await receive_events.receive()]
                except trio.EndOfChannel:
                    break
                while True:
                    try:
                        batch.append(receive_events.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                log.extend(batch)
        finally:
            log.finish()
