"""Conversations shared by ``claude_session`` steps, in memory and on disk.

One ``SessionStore`` per run holds each named session's messages (Messages API
``role``/``content`` dicts). Steps that share a ``session_name`` continue the
same conversation. With ``persist``, the conversation is also written to
``<workspace>/.sluiceway/sessions/<name>.json`` (atomically: a temporary file,
then ``os.replace``) and resumed from there by the next run.

A session file that cannot be read back is a ``SessionError`` naming the file
and the problem. It is never silently reset: the user decides (fix or delete it).

File format::

    {"version": 1, "name": "<name>", "messages": [{"role": "user", "content": ...}, ...]}
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from sluiceway._errors import SluicewayError

from ._blocking import run_blocking

__all__ = ("SESSIONS_DIR", "SessionError", "SessionStore", "trim_history", "validate_session_name")

#: Where persisted sessions live, relative to the workspace.
SESSIONS_DIR: Final = Path(".sluiceway") / "sessions"
#: The file format version written (and the only one read).
FORMAT_VERSION: Final = 1
#: Characters a session name may have at most.
MAX_NAME_CHARS: Final = 200


class SessionError(SluicewayError):
    """A session could not be loaded or saved, or its name is invalid.

    Attributes:
        session: The session name.
        path: The session file, when the problem is with it.
    """

    def __init__(self, message: str, *, session: str, path: Path | None = None) -> None:
        self.session = session
        self.path = path
        self.message = message
        where = f"session {session!r}" + (f" ({path})" if path is not None else "")
        super().__init__(f"{where}: {message}")


def validate_session_name(name: str) -> str:
    """Return *name* when it is a usable session name (also as a file name).

    Raises:
        SessionError: empty, too long, ``.``/``..``, or holding a path separator,
            NUL or control character.
    """
    if not isinstance(name, str) or not name.strip():
        raise SessionError("a session name must be a non-empty string", session=str(name))
    if len(name) > MAX_NAME_CHARS:
        raise SessionError(f"a session name has at most {MAX_NAME_CHARS} characters", session=name)
    if name in {".", ".."} or any(c in name for c in "/\\") or (os.altsep and os.altsep in name):
        raise SessionError("a session name must not be a path (no '/', '\\', '.' or '..')", session=name)
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise SessionError("a session name must not hold control characters", session=name)
    return name


def _has_tool_result(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def trim_history(messages: Sequence[dict[str, Any]], max_history: int | None) -> list[dict[str, Any]]:
    """Keep at most the last *max_history* messages, starting with a plain user message.

    After the cut, leading messages are dropped until the first is a ``user``
    message holding no ``tool_result`` (whose ``tool_use`` would have been cut
    off): the Messages API rejects anything else as a first message. May return
    fewer than *max_history* messages, or none. ``None`` keeps everything.
    """
    if max_history is None:
        kept = list(messages)
    elif max_history < 0:
        raise ValueError(f"max_history must be >= 0, got {max_history}")
    else:
        kept = list(messages[max(0, len(messages) - max_history) :]) if max_history else []
    start = 0
    while start < len(kept) and (kept[start].get("role") != "user" or _has_tool_result(kept[start])):
        start += 1
    return kept[start:]


def _check_messages(data: Any) -> list[dict[str, Any]]:
    """Return the messages of a decoded session file; ``ValueError`` says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, found {type(data).__name__}")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported version {data.get('version')!r} (expected {FORMAT_VERSION})")
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}] must be an object")
        if message.get("role") not in {"user", "assistant"}:
            raise ValueError(f"messages[{i}].role must be 'user' or 'assistant', found {message.get('role')!r}")
        if not isinstance(message.get("content"), str | list):
            raise ValueError(f"messages[{i}].content must be a string or a list of blocks")
    return messages


class SessionStore:
    """Named conversations of one run; persisted ones live under *workspace*.

    ``load``/``save`` do small blocking file I/O; async code calls ``aload``/``asave``,
    which run it in a worker thread.
    """

    def __init__(self, workspace: str | os.PathLike[str]) -> None:
        self.directory: Path = Path(workspace) / SESSIONS_DIR
        """Where persisted sessions are stored."""
        self._memory: dict[str, list[dict[str, Any]]] = {}

    def path_for(self, name: str) -> Path:
        """Return the file of session *name* (validated)."""
        return self.directory / f"{validate_session_name(name)}.json"

    def load(self, name: str, *, persist: bool = True) -> list[dict[str, Any]]:
        """Return a copy of session *name*'s messages; ``[]`` for a new session.

        From memory when this run already has it; otherwise, when *persist*, from
        its file if there is one.

        Raises:
            SessionError: an invalid name, or a file that cannot be read or is corrupt.
        """
        path = self.path_for(name)
        if name in self._memory:
            return copy.deepcopy(self._memory[name])
        if not persist:
            return []
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise SessionError(f"cannot read the session file: {exc}", session=name, path=path) from exc
        try:
            messages = _check_messages(json.loads(raw))
        except ValueError as exc:
            raise SessionError(
                f"the session file is corrupt ({exc}); fix or delete it to start over",
                session=name,
                path=path,
            ) from exc
        self._memory[name] = messages
        return copy.deepcopy(messages)

    def save(
        self,
        name: str,
        messages: Sequence[dict[str, Any]],
        *,
        persist: bool,
        max_history: int | None,
    ) -> list[dict[str, Any]]:
        """Store session *name*'s conversation, trimmed to *max_history*; return what is kept.

        With *persist*, also write it to its file atomically (the old file stays
        whole if writing fails).

        Raises:
            SessionError: an invalid name, messages that are not JSON, or a failed write.
        """
        path = self.path_for(name)
        kept = trim_history(messages, max_history)
        if persist:
            try:
                data = json.dumps(
                    {"version": FORMAT_VERSION, "name": name, "messages": kept},
                    ensure_ascii=False,
                    indent=1,
                )
            except (TypeError, ValueError) as exc:
                raise SessionError(f"the messages are not JSON: {exc}", session=name, path=path) from exc
            try:
                self._write_atomic(path, data)
            except OSError as exc:
                raise SessionError(f"cannot write the session file: {exc}", session=name, path=path) from exc
        self._memory[name] = copy.deepcopy(kept)
        return kept

    async def aload(self, name: str, *, persist: bool = True) -> list[dict[str, Any]]:
        """``load`` in a worker thread; cancellation waits for the (short) read to finish."""
        return await run_blocking(lambda: self.load(name, persist=persist))

    async def asave(
        self, name: str, messages: Sequence[dict[str, Any]], *, persist: bool, max_history: int | None
    ) -> list[dict[str, Any]]:
        """``save`` in a worker thread; not abandoned on cancellation, so the file stays whole."""
        return await run_blocking(
            lambda: self.save(name, messages, persist=persist, max_history=max_history)
        )

    @staticmethod
    def _write_atomic(path: Path, data: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
