"""A step's saved responses: one file per finished model call, written atomically.

``SavedResponses`` is the store (``saved(key, input_hash)``, ``save(key,
input_hash, response)``); ``response_to_json`` / ``response_from_json`` are the
files' form of a ``Response``. Each file::

    {"sluiceway_saved": 1, "step": "many", "key": 3, "input_hash": "sha256:...",
     "provider": "anthropic", "response": {"text": ..., "messages": [...], "usage": {...}, ...}}

``_resume`` decides what is saved where, and what a resumed run reuses.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from .._result import Reuse
from ..engine import (
    Message,
    Response,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)

__all__ = (
    "SAVED_FORMAT",
    "ResumeState",
    "ResumeWarning",
    "SavedResponses",
    "response_from_json",
    "response_to_json",
    "safe_name",
    "write_atomic",
)

#: The saved-response file format; a file of another format is not trusted.
SAVED_FORMAT: Final = 1


class ResumeWarning(RuntimeWarning):
    """A saved response could not be trusted (unreadable, corrupt): its task runs again."""


@attrs.define
class SavedResponses:
    """One step's saved responses: ``<key>.json`` files, each with its input hash.

    *key* is a batch task's index, or the step's name for a whole step. Reads
    come from the resumed run's folder; writes go to this run's. Both are plain
    file operations on the calling thread, as ``result.json``'s write is: a
    file of a few kilobytes per finished call costs less than a hop to a worker
    thread (a batch of thousands of tasks would pay one per task), a write
    cannot be cancelled half way, and a run on a virtual clock does not see
    time jump while a thread works.
    """

    folder: Path
    """Where this run saves."""
    previous: Path | None
    """Where the run it resumes saved, or ``None``."""
    step: str
    """The step's name (in warnings)."""
    _made: bool = attrs.field(default=False, init=False, repr=False)
    """Whether *folder* was made (by the first save)."""

    def path(self, key: int | str) -> Path:
        """The file of *key* in this run's folder."""
        return self.folder / f"{safe_name(str(key))}.json"

    def saved(self, key: int | str, input_hash: str) -> Response | None:
        """The response the resumed run saved for *key*, when its input hash is *input_hash*.

        ``None`` when there is none, it was made from other inputs, or it cannot
        be trusted (unreadable, not JSON, another format: a ``ResumeWarning``
        names the file, and the task runs again).
        """
        (found,) = self.saved_many([(key, input_hash)])
        return found

    def saved_many(self, wanted: Sequence[tuple[int | str, str]]) -> list[Response | None]:
        """``saved`` for each ``(key, input_hash)`` of *wanted*."""
        if self.previous is None:
            return [None] * len(wanted)
        found = [_read_saved(self.previous / f"{safe_name(str(key))}.json", h) for key, h in wanted]
        for item in found:
            if isinstance(item, str):
                warnings.warn(ResumeWarning(item), stacklevel=2)
        return [item if isinstance(item, Response) else None for item in found]

    def save(self, key: int | str, input_hash: str, response: Response, *, provider: str = "") -> None:
        """Save *response* for *key*, atomically; a response that cannot be saved is warned about.

        Not saving loses nothing of this run (the response is in its result);
        a later resume calls that task again. A plain write of a small file, on
        the calling thread: it cannot be cancelled half way (the call is paid for),
        and costs less than a hop to a worker thread would.
        """
        try:
            data = {
                "sluiceway_saved": SAVED_FORMAT,
                "step": self.step,
                "key": key,
                "input_hash": input_hash,
                "provider": provider,
                "response": response_to_json(response),
            }
            text = json.dumps(data, ensure_ascii=False)
        except (TypeError, ValueError) as exc:  # an output that is not JSON
            warnings.warn(ResumeWarning(f"step {self.step!r}: response {key} not saved: {exc}"), stacklevel=1)
            return
        path = self.path(key)
        try:
            if not self._made:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made = True
            write_atomic(path, text)
        except OSError as exc:
            warnings.warn(ResumeWarning(f"step {self.step!r}: response {key} not saved: {exc}"), stacklevel=1)


@attrs.define
class ResumeState:
    """A run's saved responses: where it saves them, the run it resumes, and what it reused."""

    run_dir: Path
    """This run's folder: responses are saved under it."""
    previous: Path | None = None
    """The folder of the run this one resumes (``resume=RUN_DIR``), or ``None``."""
    reuse: Reuse = attrs.field(factory=Reuse)
    """What this run took from *previous* instead of calling the model (``result.json``'s ``reused``)."""
    by_step: dict[str, int] = attrs.field(factory=dict)
    """Step name -> how many of its responses (tasks, or the step's one) were replayed."""

    def store(self, step: str, *, batch: bool) -> SavedResponses:
        """The saved responses of *step*: its tasks' (*batch*), or its own."""
        relative = Path("batch", safe_name(step)) if batch else Path("steps")
        return SavedResponses(
            folder=self.run_dir / relative,
            previous=None if self.previous is None else self.previous / relative,
            step=step,
        )

    def count_reused(self, step: str, response: Response) -> None:
        """Add a replayed response to the tallies."""
        reuse = self.reuse
        reuse.responses += 1
        reuse.requests += sum(1 for m in response.messages if m.role == "assistant")
        reuse.usage = reuse.usage + response.usage
        if reuse.cost_usd is not None:
            reuse.cost_usd = None if response.cost_usd is None else reuse.cost_usd + response.cost_usd
        self.by_step[step] = self.by_step.get(step, 0) + 1


def _read_saved(path: Path, input_hash: str) -> Response | str | None:
    """The saved response in *path* if its input hash is *input_hash*; ``None``; or why it is not trusted."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: cannot be read ({exc}); the call runs again"
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("sluiceway_saved") != SAVED_FORMAT:
            raise ValueError(f"not a saved response of format {SAVED_FORMAT}")
        if data.get("input_hash") != input_hash:
            return None  # made from other inputs (a prompt, model or option changed)
        return response_from_json(data["response"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"{path}: not a valid saved response ({exc}); the call runs again"


def write_atomic(path: Path, text: str) -> None:
    """Write *text* to *path* whole or not at all: a temporary file beside it, then renamed over *path*.

    Whole or absent whatever moment the process dies. Not synced to the disk
    (a sync per task would slow a large batch): after a power loss a file may
    be incomplete, and ``_read_saved`` then refuses it.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def safe_name(name: str) -> str:
    """*name* as a file name: characters other than word characters, ``.-[]`` become ``_``."""
    return re.sub(r"[^\w.\-\[\]]", "_", name) or "_"


def _block_to_json(block: Any) -> dict[str, Any]:
    out = attrs.asdict(block)
    out["type"] = block.type
    return out


_BLOCKS: Final[dict[str, type]] = {
    "text": TextBlock, "thinking": ThinkingBlock, "tool_use": ToolUseBlock, "tool_result": ToolResultBlock,
}


def _block_from_json(data: Mapping[str, Any]) -> Any:
    fields = dict(data)
    cls = _BLOCKS.get(fields.pop("type", None))
    if cls is None:
        raise ValueError(f"unknown content block type {data.get('type')!r}")
    return cls(**fields)


def response_to_json(response: Response) -> dict[str, Any]:
    """*response* as JSON-able data (``response_from_json`` reads it back); the metrics are not kept."""
    return {
        "text": response.text,
        "messages": [
            {
                "role": m.role,
                "content": [_block_to_json(b) for b in m.content],
                "usage": None if m.usage is None else attrs.asdict(m.usage),
                "stop_reason": m.stop_reason,
            }
            for m in response.messages
        ],
        "usage": attrs.asdict(response.usage),
        "cost_usd": response.cost_usd,
        "stop_reason": response.stop_reason,
        "model": response.model,
        "status": response.status,
        "output": response.output,
        "superseded_usage": attrs.asdict(response.superseded_usage),
        "superseded_cost_usd": response.superseded_cost_usd,
    }


def response_from_json(data: Mapping[str, Any]) -> Response:
    """The ``Response`` ``response_to_json`` wrote (its messages with an empty envelope).

    Raises:
        ValueError, KeyError, TypeError: *data* is not such a response.
    """
    messages = tuple(
        Message(
            run_id="", step="", role=m["role"], content=tuple(_block_from_json(b) for b in m["content"]),
            usage=None if m.get("usage") is None else Usage(**m["usage"]), stop_reason=m.get("stop_reason"),
        )
        for m in data["messages"]
    )
    text = data["text"]
    if not isinstance(text, str):
        raise TypeError("text is not a string")
    return Response(
        text=text,
        messages=messages,
        usage=Usage(**data["usage"]),
        cost_usd=data.get("cost_usd"),
        stop_reason=data.get("stop_reason"),
        model=data.get("model"),
        status=data.get("status", "ok"),
        output=data.get("output"),
        superseded_usage=Usage(**data.get("superseded_usage", {})),
        superseded_cost_usd=data.get("superseded_cost_usd", 0.0),
    )
