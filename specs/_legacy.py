"""Normalize the seeds' older YAML generations into the canonical form.

Works on any mutable mapping: plain dicts when loading (with a Locator so that
errors still point at the user's lines) and ruamel.yaml round-trip maps when
``migrate`` rewrites a file (so comments stay where they were).
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from typing import Any, Final

from ._yaml import Path, format_path

__all__ = ("LEGACY_HANDLER_RE", "SluicewayDeprecationWarning", "legacy_handler_name", "normalize")


class SluicewayDeprecationWarning(DeprecationWarning):
    """A spec uses an older form; the message names the replacement (``sluiceway migrate`` rewrites it)."""


#: ``Pipeline.Streaming.ConsoleHandler``, ``Pipeline.AsyncStreaming.ConsoleHandler``,
#: ``Pipeline.Streaming.Handlers.FileHandler`` ... -> the built-in name.
LEGACY_HANDLER_RE: Final = re.compile(
    r"^Pipeline\.(?:Async)?Streaming\.(?:Handlers\.)?(Simple|Console|Debug|File|Buffer|Callback)Handler$"
)

#: Keys of ``claude_options`` that belong on the step: old -> new.
_LIFTED: Final = {
    "async_streaming": "stream",
    "stream_handler": "stream_handler",
    "stream_buffer_size": "stream_buffer_size",
    "stream_handler_opts": "stream_handler_opts",
}
#: Renamed step keys: old -> new.
_RENAMED: Final = {"async_stream": "stream", "async_handler": "stream_handler"}

Warn = Callable[[Path, str], None]
Error = Callable[[Path, str], None]
Move = Callable[[Path, Path], None]


def legacy_handler_name(ref: Any) -> str | None:
    """The built-in name for a legacy handler module name, else ``None``."""
    if isinstance(ref, str):
        match = LEGACY_HANDLER_RE.match(ref)
        if match:
            return match.group(1).lower()
    return None


def _map_handlers(value: Any) -> Any:
    if isinstance(value, str):
        return legacy_handler_name(value) or value
    if isinstance(value, list):
        return [_map_handlers(v) for v in value]
    return value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _index(mapping: MutableMapping[Any, Any], key: Any) -> int:
    return list(mapping).index(key)


def _put(mapping: MutableMapping[Any, Any], key: str, value: Any, at: int) -> None:
    insert = getattr(mapping, "insert", None)  # ruamel CommentedMap keeps key order and comments
    if insert is not None:
        insert(at, key, value)
    else:
        mapping[key] = value


def _take_comment(
    src: MutableMapping[Any, Any], old: str, dst: MutableMapping[Any, Any], new: str
) -> None:
    ca_src, ca_dst = getattr(src, "ca", None), getattr(dst, "ca", None)
    if ca_src is not None and ca_dst is not None and old in ca_src.items:
        ca_dst.items[new] = ca_src.items.pop(old)


class _Normalizer:
    def __init__(self, warn: Warn, error: Error, move: Move) -> None:
        self.warn, self.error, self.move = warn, error, move

    def replace(
        self,
        src: MutableMapping[Any, Any],
        src_path: Path,
        old: str,
        dst: MutableMapping[Any, Any],
        dst_path: Path,
        new: str,
        at: int,
    ) -> None:
        """Move ``src[old]`` to ``dst[new]``, warning, or flag a conflict."""
        value = src[old]
        old_path, new_path = (*src_path, old), (*dst_path, new)
        self.warn(
            old_path,
            f"{format_path(old_path)} is deprecated; use {format_path(new_path)} "
            "(`sluiceway migrate` rewrites it)",
        )
        if new in dst:
            if _map_handlers(dst[new]) != _map_handlers(value):
                self.error(
                    old_path,
                    f"conflicts with {format_path(new_path)}: {_show(value)} vs {_show(dst[new])}; keep only `{new}`",
                )
            _take_comment(src, old, dst, new)
            del src[old]
            return
        _take_comment(src, old, dst, new)
        del src[old]
        _put(dst, new, value, at)
        self.move(old_path, new_path)

    def handlers(self, owner: MutableMapping[Any, Any], path: Path) -> None:
        value = owner.get("stream_handler")
        refs = value if isinstance(value, list) else [value]
        for index, ref in enumerate(refs):
            name = legacy_handler_name(ref)
            if name is None:
                continue
            where = (*path, "stream_handler") + ((index,) if isinstance(value, list) else ())
            self.warn(
                where,
                f"{format_path(where)}: handler name {ref!r} is deprecated; use {name!r} "
                "(`sluiceway migrate` rewrites it)",
            )
            if isinstance(value, list):
                value[index] = name
            else:
                owner["stream_handler"] = name

    def lift(self, owner: MutableMapping[Any, Any], path: Path, keys: dict[str, str]) -> None:
        options = owner.get("claude_options")
        if not isinstance(options, MutableMapping):
            return
        lifted = 0
        for old in [k for k in options if k in keys]:  # in the user's order
            new = keys[old]
            if old in options:
                at = _index(owner, "claude_options") + 1 + lifted
                lifted += new not in owner
                self.replace(options, (*path, "claude_options"), old, owner, path, new, at)
        if not options:
            at = _index(owner, "claude_options") + 1
            first = (
                list(owner)[at] if at < len(owner) and list(owner)[at] in keys.values() else None
            )
            ca = getattr(owner, "ca", None)
            if first is not None and ca is not None and first not in ca.items:
                _take_comment(
                    owner, "claude_options", owner, first
                )  # keep a comment on the emptied key
            del owner["claude_options"]

    def alias(self, owner: MutableMapping[Any, Any], path: Path, alias: str, key: str) -> None:
        """Rename *alias* to *key* in place (both spellings are current: no warning)."""
        if alias not in owner:
            return
        if key in owner:
            self.error((*path, alias), f"`{alias}` is an alias of `{key}`; set only one of them")
            del owner[alias]  # reported once, not again as an unknown key
            return
        at = _index(owner, alias)
        value = owner[alias]
        _take_comment(owner, alias, owner, key)
        del owner[alias]
        _put(owner, key, value, at)
        self.move((*path, alias), (*path, key))

    def step(self, step: MutableMapping[Any, Any], path: Path) -> None:
        self.alias(step, path, "id", "name")
        tasks = step.get("parallel_tasks")
        if isinstance(tasks, list):  # tasks are named by `id`, steps by `name`: either is taken
            for index, task in enumerate(tasks):
                if isinstance(task, MutableMapping):
                    self.alias(task, (*path, "parallel_tasks", index), "name", "id")
        self.lift(step, path, _LIFTED)
        for old, new in _RENAMED.items():
            if old in step:
                self.replace(step, path, old, step, path, new, _index(step, old))
        self.handlers(step, path)


def normalize(pipeline: Any, *, warn: Warn, error: Error, move: Move) -> None:
    """Rewrite legacy forms in *pipeline* (the mapping with ``steps``) in place.

    Args:
        pipeline: The pipeline mapping (inside any ``workflow:`` wrapper).
        warn: Called with (path, one-line message) for each legacy form.
        error: Called with (path, message) for old and new forms that conflict.
        move: Called with (old path, new path) when a value moves.
    """
    if not isinstance(pipeline, MutableMapping):
        return
    normalizer = _Normalizer(warn, error, move)
    defaults = pipeline.get("defaults")
    if isinstance(defaults, MutableMapping):
        options = defaults.get("claude_options")
        if isinstance(options, MutableMapping) and "async_streaming" in options:
            error(
                ("defaults", "claude_options", "async_streaming"),
                "streaming is switched per step; remove this and set `stream` on the steps",
            )
            del options["async_streaming"]
        lifted = {k: v for k, v in _LIFTED.items() if k != "async_streaming"}
        normalizer.lift(defaults, ("defaults",), lifted)
        normalizer.handlers(defaults, ("defaults",))
    steps = pipeline.get("steps")
    if isinstance(steps, list):
        for index, step in enumerate(steps):
            if isinstance(step, MutableMapping):
                normalizer.step(step, ("steps", index))
