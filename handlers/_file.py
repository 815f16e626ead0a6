"""The ``file`` handler: the step's stream to a file, as text or JSON lines.

Durability choices:

* **One write and one flush per batch.** The engine hands over every event
  already waiting as one batch, so a batch is one ``write`` syscall: cheap
  (page cache, microseconds) and self-limiting (a lagging handler gets bigger
  batches, not more of them). Flushing every batch, not only at message
  boundaries, is what makes "what was delivered before a crash or Ctrl-C is on
  disk" true for deltas in the middle of a message: Python's own buffer dies
  with the process, the page cache does not.
* **fsync at the step's terminal event and at close, on the event loop.** At
  most two per handler (sub-steps' terminal events are flushed, not synced), each
  usually well under 10 ms, so the stall is small and rare. A worker thread
  (``trio.to_thread.run_sync``) would hide that stall but breaks virtual time:
  trio's autojump clock sees the loop idle while the thread works and jumps past
  every pending deadline, so runs under ``MockClock`` (the test suite, and the
  testing kit's ``check_handler``) would time out spuriously.
* The file is opened at the first event, not at construction, so a handler that
  is built but never fed leaves no file and no open descriptor behind.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

import attr
import attrs
import cattrs

from .. import engine
from .._errors import SluicewayError
from ..engine import (
    TERMINAL_EVENTS,
    Cancelled,
    Delta,
    Done,
    Event,
    Failed,
    HandlerContext,
    HandlerPolicy,
    Message,
    Retrying,
    StepStarted,
    ToolResult,
    ToolUse,
)
from ._base import HandlerConfigError, LineTracker, SyncHandler, clock, substep_prefix

__all__ = ("FileHandler", "event_from_dict", "event_to_dict", "render_file_path")

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


def _jsonable(inst: Any, field: Any, value: Any) -> Any:
    # attrs.asdict value_serializer: errors become their message, odd values their str.
    if isinstance(value, BaseException):
        return str(value) or type(value).__name__
    if value is None or isinstance(value, str | int | float | bool | list | dict | tuple):
        return value
    if attrs.has(type(value)):
        return value  # asdict recurses into it after this hook
    return str(value)


def event_to_dict(event: Event) -> dict[str, Any]:
    """The JSON object the ``jsonl`` format writes for *event*.

    ``{"type": "Delta", "run_id": ..., "step": ..., "attempt": ..., "seq": ...,
    "at": ..., <the event's fields>}``; nested values (``Response``, ``Usage``,
    ``Metrics``, content blocks) via ``attrs.asdict``, tuples as lists, errors
    as their message.
    """
    # attr.asdict (not attrs.asdict) can turn tuples into lists, as JSON will.
    fields = attr.asdict(event, retain_collection_types=False, value_serializer=_jsonable)
    return {"type": type(event).__name__, **fields}


_EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        engine.RunStarted,
        engine.RunFinished,
        StepStarted,
        Delta,
        engine.ThinkingDelta,
        engine.ToolInputDelta,
        Message,
        ToolUse,
        ToolResult,
        engine.PartialOutput,
        Retrying,
        Done,
        Failed,
        Cancelled,
    )
}
_converter = cattrs.Converter()
# jsonl records an error as its message; it comes back as a SluicewayError.
_converter.register_structure_hook(BaseException, lambda value, _: SluicewayError(str(value)))


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from ``event_to_dict`` output (one ``jsonl`` line, parsed).

    A ``Failed`` event's error comes back as a ``SluicewayError`` holding the
    recorded message (its original type is not recorded).

    Raises:
        ValueError: an unknown ``type`` or fields that do not fit it.
    """
    fields = dict(data)
    name = fields.pop("type", None)
    cls = _EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"not an event type: {name!r}")
    try:
        return _converter.structure(fields, cls)
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc))
        raise ValueError(f"not a valid {name} event: {problems}") from exc


def render_file_path(template: str, context: HandlerContext) -> Path:
    """Fill ``{{execution_id}}``, ``{{run_id}}``, ``{{step}}``, ``{{pipeline}}``,
    ``{{timestamp}}`` (the run's start, ``20260101T123456``) and the pipeline's
    variables (``{{name}}`` or ``{{vars.name}}``) into *template*, and place it.

    A relative path resolves inside ``context.output_dir`` and may not leave it
    (``..``, or a symlink pointing out); an absolute path (or ``~/...``) is used as
    written.

    Raises:
        HandlerConfigError: an unknown placeholder, or a relative path that escapes.
    """
    values: dict[str, str] = {str(k): str(v) for k, v in context.variables.items()}
    values.update(
        execution_id=context.run_id,
        run_id=context.run_id,
        step=context.step,
        pipeline=context.pipeline,
        timestamp=time.strftime("%Y%m%dT%H%M%S", time.localtime(context.started_wall)),
    )

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        root, _, rest = name.partition(".")
        if root in ("vars", "variables") and rest in values:
            name = rest
        if name not in values:
            known = ", ".join(sorted(values))
            raise HandlerConfigError(
                f"file handler: unknown placeholder {{{{{name}}}}} in file_path {template!r}; "
                f"known: {known}"
            )
        return values[name]

    rendered = _PLACEHOLDER.sub(fill, template)
    written = os.path.expanduser(template)
    if os.path.isabs(written):
        return Path(os.path.expanduser(rendered))
    base = Path(context.output_dir).resolve()
    path = (base / rendered).resolve()
    if not path.is_relative_to(base):
        raise HandlerConfigError(
            f"file handler: file_path {template!r} resolves to {str(path)!r}, outside the "
            f"output directory {str(base)!r}; write an absolute path to log elsewhere"
        )
    return path


class FileHandler(SyncHandler):
    """Write the step's stream to a file, as readable text or one JSON object per event.

    Text format::

        --- draft started: mock claude-sonnet-4 at 12:34:56 ---
        I'll analyze this code for you...
        [tool use] Read {"file_path": "lib/app.py"}
        [tool result] Read: defmodule App do
        --- attempt 1 superseded (overloaded); attempt 2 follows ---
        --- completed: 3 messages in 2140 ms ---
    """

    policy: ClassVar[HandlerPolicy] = "block"
    """Lossless: the file holds every event as sent."""

    @attrs.frozen(kw_only=True)
    class Options:
        """``stream_handler_opts`` of the ``file`` handler."""

        file_path: str = "{{step}}.stream.log"
        """Where to write; relative paths are inside the output directory."""
        append: bool = False
        """Append to the file instead of replacing it."""
        format: Literal["text", "jsonl"] = "text"
        """``text``: readable; ``jsonl``: one JSON object per event."""

    def __init__(self, options: FileHandler.Options, context: HandlerContext) -> None:
        self.options = options
        self.context = context
        self.path: Path = render_file_path(options.file_path, context)
        """Where the stream is written."""
        self._file: IO[str] | None = None
        self._lines = LineTracker()
        self._unsynced = False
        self._closed = False

    def _handle_events(self, events: Sequence[Event]) -> None:
        """Write *events* with one write, flush it, and fsync if the step ended.

        Never waits on anything but the file; the fsync at the terminal event
        blocks the loop briefly (see the module docstring).
        """
        if self._closed:
            raise RuntimeError(f"file handler for {self.path} is closed")
        if self.options.format == "jsonl":
            text = "".join(json.dumps(event_to_dict(e), ensure_ascii=False) + "\n" for e in events)
        else:
            out: list[str] = []
            for event in events:
                self._render(event, out)
            text = "".join(out)
        file = self._open()
        if text:
            # Flushing every batch covers every message boundary (Message, tool and terminal events) and
            # keeps mid-message deltas on disk too; see the module docstring.
            file.write(text)
            file.flush()
            self._unsynced = True
        if self._unsynced and any(
            isinstance(e, TERMINAL_EVENTS) and e.step == self.context.step for e in events
        ):
            self._fsync()

    async def aclose(self) -> None:
        """End an open line, flush, fsync what was not yet synced, and close the file.

        Idempotent. Has no checkpoint, so it finishes even when cancelled; the
        file is closed even if the flush fails.
        """
        if self._closed:
            return
        self._closed = True
        file = self._file
        if file is None:
            return
        try:
            out: list[str] = []
            self._lines.end_line(out)
            if out:
                file.write("".join(out))
                self._unsynced = True
            file.flush()
            if self._unsynced:
                self._fsync()
        finally:
            file.close()

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a" if self.options.append else "w", encoding="utf-8")  # noqa: ASYNC230 - small, local; see module docstring
        return self._file

    def _fsync(self) -> None:
        assert self._file is not None
        os.fsync(self._file.fileno())  # on the loop, on purpose: see the module docstring
        self._unsynced = False

    def _render(self, event: Event, out: list[str]) -> None:
        lines = self._lines
        prefix = substep_prefix(self.context, event.step)
        if isinstance(event, Delta):
            lines.stream(event.step, "text", prefix, event.content, out)
        elif isinstance(event, Message):
            lines.end_line_of(event.step, out)
        elif isinstance(event, StepStarted):
            model = f" {event.model}" if event.model else ""
            at = clock(self.context, event.at)[1:-1]
            lines.line(f"{prefix}--- {event.step} started: {event.provider}{model} at {at} ---", out)
        elif isinstance(event, ToolUse):
            payload = json.dumps(event.input, ensure_ascii=False, default=str)
            lines.line(f"{prefix}[tool use] {event.name} {payload}", out)
        elif isinstance(event, ToolResult):
            label = "tool error" if event.is_error else "tool result"
            lines.line(f"{prefix}[{label}] {event.name}: {event.content.rstrip()}", out)
        elif isinstance(event, engine.PartialOutput):
            if event.complete:  # the partial values are left to the jsonl format
                payload = json.dumps(event.value, ensure_ascii=False, default=str)
                lines.line(f"{prefix}[output] {payload}", out)
        elif isinstance(event, Retrying):
            lines.line(
                f"{prefix}--- attempt {event.next_attempt - 1} superseded ({event.reason}); "
                f"attempt {event.next_attempt} follows ---",
                out,
            )
        elif isinstance(event, Done):
            m = event.response.metrics
            lines.line(
                f"{prefix}--- completed: {m.message_count} messages in {round(m.duration * 1000)} ms ---",
                out,
            )
        elif isinstance(event, Failed):
            lines.line(f"{prefix}--- failed: {event.message or event.error} ---", out)
        elif isinstance(event, Cancelled):
            lines.line(f"{prefix}--- cancelled ---", out)
        # Thinking and tool-input deltas and run events are left to the jsonl format.
