"""Check plain YAML data against the spec classes' types, collecting every issue.

cattrs does the structuring; this walk runs first so that each problem gets its
own message (expected vs found, "did you mean"), its field path and its line,
and so that all of them are reported at once.
"""

from __future__ import annotations

import difflib
import functools
import math
import types
import typing
from collections.abc import Iterable
from typing import Any, Final, Literal

import attrs

from .._errors import SpecIssue
from . import _model
from ._yaml import Locator, Path

__all__ = ("TAGGED_UNIONS", "check_data", "describe_value", "did_you_mean", "field_types")

#: Unions chosen by their ``type`` key: union -> {tag: class}.
TAGGED_UNIONS: Final[dict[Any, dict[str, type]]] = {
    _model.Step: dict(_model.STEP_TYPES),
    _model.PromptPart: {
        "static": _model.StaticPart,
        "file": _model.FilePart,
        "previous_response": _model.PreviousResponsePart,
    },
}

#: Fields that must be > 0 (by name, wherever they appear).
POSITIVE_FIELDS: Final = frozenset(
    {
        "stream_buffer_size",
        "max_turns",
        "max_tokens",
        "max_parallel",
        "actors",
        "timeout_ms",
        "handler_timeout_ms",
        "first_token_timeout_ms",
        "idle_timeout_ms",
        "tool_timeout_ms",
        "chunk_size",
        "max_history",
        "timeout_per_task",
    }
)
#: Fields that must lie in 0..1 (the Messages API's sampling parameters).
UNIT_INTERVAL_FIELDS: Final = frozenset({"temperature", "top_p"})
#: Fields that must be >= 0.
NON_NEGATIVE_FIELDS: Final = frozenset(
    {
        "max_retries",
        "base_delay_ms",
        "max_delay_ms",
        "error_after",
        "error_attempts",
        "error_turn",
        "delay_ms",
        "first_token_delay_ms",
        "retry_after",
    }
)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of an attrs class's fields."""
    return typing.get_type_hints(cls)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean `x`?"`` for a near miss, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def describe_value(value: Any) -> str:
    """How a found value reads in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def describe_type(tp: Any) -> str:
    """How an expected type reads in a message."""
    if tp in TAGGED_UNIONS:
        return "a mapping with `type` one of " + ", ".join(TAGGED_UNIONS[tp])
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(describe_type(a) for a in args)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        item = typing.get_args(tp)[0]
        plural = {
            _model.Step: "steps (mappings with a `type`)",
            _model.PromptPart: "prompt parts (mappings with a `type`: static, file, previous_response)",
            str: "strings",
            int: "integers",
            float: "numbers",
        }
        if item in plural:
            return f"a list of {plural[item]}"
        if attrs.has(item):
            return f"a list of mappings ({item.__name__})"
        return f"a list whose items are each {describe_type(item)}"
    if origin is dict or attrs.has(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )


class _Checker:
    def __init__(self, locator: Locator) -> None:
        self.locator = locator
        self.issues: list[SpecIssue] = []

    def add(self, path: Path, message: str, *, key: bool = False) -> None:
        self.issues.append(self.locator.issue(path, message, key=key))

    def expected(self, path: Path, tp: Any, value: Any) -> None:
        self.add(path, f"expected {describe_type(tp)}, got {describe_value(value)}")

    def check(self, value: Any, tp: Any, path: Path) -> None:
        if tp is Any:
            return
        if tp in TAGGED_UNIONS:
            self.check_tagged(value, TAGGED_UNIONS[tp], path, tp)
            return
        if _is_union(tp):
            self.check_union(value, tp, path)
            return
        origin = typing.get_origin(tp)
        if origin is Literal:
            choices = typing.get_args(tp)
            if value not in choices or isinstance(value, bool):
                hint = did_you_mean(value, map(str, choices)) if isinstance(value, str) else ""
                self.add(path, f"expected {describe_type(tp)}, got {describe_value(value)}{hint}")
            return
        if origin is tuple:
            if not isinstance(value, list):
                self.expected(path, tp, value)
                return
            (item_tp, *_) = typing.get_args(tp)
            for index, item in enumerate(value):
                self.check(item, item_tp, (*path, index))
            return
        if origin is dict:
            if not isinstance(value, dict):
                self.expected(path, tp, value)
                return
            _, value_tp = typing.get_args(tp)
            for key, item in value.items():
                if not isinstance(key, str):
                    self.add(
                        (*path, str(key)),
                        f"expected a string key, got {describe_value(key)}",
                        key=True,
                    )
                self.check(item, value_tp, (*path, str(key)))
            return
        if attrs.has(tp):
            self.check_attrs(value, tp, path)
            return
        self.check_scalar(value, tp, path)

    def check_scalar(self, value: Any, tp: Any, path: Path) -> None:
        if tp is bool:
            ok = isinstance(value, bool)
        elif tp is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif tp is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif tp is str:
            ok = isinstance(value, str)
        else:  # pragma: no cover - the model uses only the types above
            ok = isinstance(value, tp)
        if not ok:
            self.expected(path, tp, value)
            return
        if tp is float and not math.isfinite(value):
            self.add(path, f"expected a finite number, got {describe_value(value)}")
            return
        name = next((p for p in reversed(path) if isinstance(p, str)), "")
        if tp in (int, float) and name == path[-1]:
            if name in UNIT_INTERVAL_FIELDS and not 0 <= value <= 1:
                self.add(path, f"expected a number from 0 to 1, got {describe_value(value)}")
            elif name in POSITIVE_FIELDS and value <= 0:
                kind = "a positive integer" if tp is int else "a positive number"
                self.add(path, f"expected {kind}, got {describe_value(value)}")
            elif name in NON_NEGATIVE_FIELDS and value < 0:
                self.add(path, f"expected a number >= 0, got {describe_value(value)}")

    def check_union(self, value: Any, tp: Any, path: Path) -> None:
        args = typing.get_args(tp)
        if value is None:
            if type(None) not in args:
                self.expected(path, tp, value)
            return
        candidates = [a for a in args if a is not type(None)]
        for arg in candidates:
            if _accepts_shape(arg, value):
                self.check(value, arg, path)
                return
        self.expected(path, tp, value)

    def check_tagged(self, value: Any, tags: dict[str, type], path: Path, tp: Any) -> None:
        if not isinstance(value, dict):
            self.expected(path, tp, value)
            return
        if "type" not in value:
            self.add(path, f"missing required key `type` (one of {', '.join(tags)})")
            return
        tag = value["type"]
        cls = tags.get(tag) if isinstance(tag, str) else None
        if cls is None:
            what = "step type" if tp is _model.Step else "prompt part type"
            hint = did_you_mean(tag, tags) if isinstance(tag, str) else ""
            self.add(
                (*path, "type"), f"unknown {what} {tag!r}; expected one of {', '.join(tags)}{hint}"
            )
            return
        self.check_attrs(value, cls, path)

    def check_attrs(self, value: Any, cls: type, path: Path) -> None:
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping ({cls.__name__}), got {describe_value(value)}")
            return
        hints = field_types(cls)
        fields = {f.alias or f.name: f for f in attrs.fields(cls) if f.init and f.name != "source"}
        for key in value:
            if key not in fields:
                self.add(
                    (*path, str(key)), f"unknown key{did_you_mean(str(key), fields)}", key=True
                )
        for name, field in fields.items():
            if name in value:
                self.check(value[name], hints[field.name], (*path, name))
            elif field.default is attrs.NOTHING:
                self.add(path, f"missing required key `{name}`")
        if cls is _model.Pipeline and value.get("steps") == []:
            self.add((*path, "steps"), "expected at least one step, got an empty list")


def _accepts_shape(tp: Any, value: Any) -> bool:
    """Whether *value* has the rough shape of *tp* (to pick a union branch)."""
    if tp is Any:
        return True
    if tp in TAGGED_UNIONS or attrs.has(tp) or typing.get_origin(tp) is dict:
        return isinstance(value, dict)
    if typing.get_origin(tp) is tuple:
        return isinstance(value, list)
    if typing.get_origin(tp) is Literal:
        return isinstance(value, str)
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return False


def check_data(data: Any, locator: Locator) -> list[SpecIssue]:
    """Every type-level issue of a (normalized) pipeline mapping."""
    checker = _Checker(locator)
    checker.check(data, _model.Pipeline, ())
    return checker.issues
