"""``{{...}}`` templates: find references, render, and the load-time roots.

A template is ``{{ root.key.key }}``: a dotted lookup into a mapping of values.
An unknown root or key is an error (``TemplateError``), never an empty string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ("BATCH_ONLY_ROOTS", "TEMPLATE_ROOTS", "TemplateError", "find_refs", "render")

#: Every root a template may start with.
TEMPLATE_ROOTS: Final = frozenset(
    {"execution_id", "step", "timestamp", "steps", "vars", "item", "index"}
)

#: Roots only valid inside claude_batch prompts.
BATCH_ONLY_ROOTS: Final = frozenset({"item", "index"})

_TEMPLATE_RE: Final = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PART_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*|\d+")


class TemplateError(KeyError):
    """A template names a root or key that has no value."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


def _split(expr: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in expr.split("."))


def find_refs(text: str) -> list[tuple[str, ...]]:
    """Return each ``{{a.b.c}}`` reference in *text* as ``("a", "b", "c")``, in order."""
    return [_split(m.group(1)) for m in _TEMPLATE_RE.finditer(text)]


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)  # JSON, not a Python repr
    return str(value)


def _lookup(values: Mapping[str, Any], ref: tuple[str, ...], raw: str) -> Any:
    root = ref[0]
    if not root or root not in values:
        known = ", ".join(sorted(values))
        raise TemplateError(f"unknown template root {root!r} in '{{{{{raw}}}}}'; known: {known}")
    value: Any = values[root]
    for depth, key in enumerate(ref[1:], start=1):
        where = ".".join(ref[:depth])
        if isinstance(value, Mapping):
            if key not in value:
                known = ", ".join(sorted(map(str, value))) or "none"
                raise TemplateError(f"'{{{{{raw}}}}}': {where} has no key {key!r}; known: {known}")
            value = value[key]
        elif isinstance(value, list | tuple) and key.isdigit():
            index = int(key)
            if index >= len(value):
                raise TemplateError(f"'{{{{{raw}}}}}': {where} has no item {index}")
            value = value[index]
        else:
            raise TemplateError(
                f"'{{{{{raw}}}}}': {where} is a {type(value).__name__}, not a mapping"
            )
    return value


def render(text: str, values: Mapping[str, Any]) -> str:
    """Replace every ``{{ref}}`` in *text* with its value from *values*.

    Args:
        text: The template.
        values: ``execution_id``, ``step``, ``timestamp``, ``vars`` (a mapping),
            ``steps`` (name -> mapping with ``text`` and maybe ``output``),
            ``item``, ``index``; only the roots present can be used.

    Raises:
        TemplateError: a root or key has no value (the message names it).
    """

    def replace(match: re.Match[str]) -> str:
        raw = match.group(1)
        return _format(_lookup(values, _split(raw), raw))

    return _TEMPLATE_RE.sub(replace, text)
