"""Step conditions: a tiny, safe expression language (no ``eval``).

Grammar::

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | compare
    compare  := operand (("==" | "!=" | "contains" | "not contains") operand)?
    operand  := ref | literal | "(" expr ")"
    ref      := ("steps" | "vars") ("." NAME)*          e.g. steps.draft.text, vars.flag
    literal  := 'text' | "text" | number | true | false | null

A reference that names nothing (a step that was skipped, a missing variable or
key) is ``null``, which is false. ``contains`` is substring on text (or
membership in a list/mapping). Truthiness: ``null``, ``false``, ``0``, ``""``
and empty collections are false; so are the strings ``"false"``, ``"no"``,
``"0"`` (case-insensitive), as ``--set flag=false`` users expect.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from ._errors import SpecError

__all__ = ("Condition", "ConditionError", "parse_condition")

#: The roots a reference may start with.
CONDITION_ROOTS: Final = frozenset({"steps", "vars"})

_TOKEN_RE: Final = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<op>==|!=|\(|\))
      | (?P<ref>[A-Za-z_][\w\-]*(?:\.[A-Za-z_0-9][\w\-]*)*)
    )""",
    re.VERBOSE,
)
_FALSE_STRINGS: Final = frozenset({"false", "no", "0", "off"})


class ConditionError(SpecError):
    """A condition does not parse, or references an unknown root."""


Node = Callable[[Mapping[str, Any]], Any]


def _either(a: Node, b: Node) -> Node:
    return lambda v: truthy(a(v)) or truthy(b(v))


def _both(a: Node, b: Node) -> Node:
    return lambda v: truthy(a(v)) and truthy(b(v))


@attrs.frozen
class Condition:
    """A parsed condition; call ``evaluate(values)`` with ``{"steps": ..., "vars": ...}``."""

    source: str
    """The condition as written."""
    _node: Node = attrs.field(repr=False)

    def evaluate(self, values: Mapping[str, Any]) -> bool:
        """Return the condition's truth for *values* (``steps`` name -> mapping/object, ``vars``)."""
        return truthy(self._node(values))


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS and value != ""
    return bool(value)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise ConditionError(f"condition {text!r}: cannot read {text[pos:].strip()!r}")
        kind = m.lastgroup
        assert kind is not None
        value = m.group(kind)
        if kind == "ref" and value in ("and", "or", "not", "contains"):
            kind = "kw"
        elif kind == "ref" and value in ("true", "false", "null", "none"):
            kind = "lit"
        tokens.append((kind, value))
        pos = m.end()
    return tokens


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def _lookup(value: Any, key: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get(key)
    if isinstance(value, list | tuple) and key.isdigit():
        index = int(key)
        return value[index] if index < len(value) else None
    return getattr(value, key, None)


def _contains(haystack: Any, needle: Any) -> bool:
    if haystack is None:
        return False
    if isinstance(haystack, str):
        return str(needle) in haystack
    try:
        return needle in haystack
    except TypeError:
        return False


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.pos = 0

    def error(self, message: str) -> ConditionError:
        return ConditionError(f"condition {self.source!r}: {message}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end")
        self.pos += 1
        return tok

    def at_kw(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "kw" and tok[1] == word

    def parse(self) -> Node:
        if not self.tokens:
            raise self.error("empty condition")
        node = self.expr()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]  # peek() is not None here
        return node

    def expr(self) -> Node:
        node = self.and_expr()
        while self.at_kw("or"):
            self.take()
            left, right = node, self.and_expr()
            node = _either(left, right)
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.at_kw("and"):
            self.take()
            left, right = node, self.not_expr()
            node = _both(left, right)
        return node

    def not_expr(self) -> Node:
        if self.at_kw("not"):
            self.take()
            inner = self.not_expr()
            return lambda v: not truthy(inner(v))
        return self.compare()

    def compare(self) -> Node:
        left = self.operand()
        tok = self.peek()
        if tok is None:
            return left
        if tok == ("op", "=="):
            self.take()
            right = self.operand()
            return lambda v: left(v) == right(v)
        if tok == ("op", "!="):
            self.take()
            right = self.operand()
            return lambda v: left(v) != right(v)
        if tok == ("kw", "contains"):
            self.take()
            right = self.operand()
            return lambda v: _contains(left(v), right(v))
        if tok == ("kw", "not") and self.pos + 1 < len(self.tokens) and self.tokens[
            self.pos + 1
        ] == ("kw", "contains"):
            self.pos += 2
            right = self.operand()
            return lambda v: not _contains(left(v), right(v))
        return left

    def operand(self) -> Node:
        kind, value = self.take()
        if kind == "op" and value == "(":
            node = self.expr()
            if self.take() != ("op", ")"):
                raise self.error("missing ')'")
            return node
        if kind == "str":
            text = _unquote(value)
            return lambda v: text
        if kind == "num":
            number = float(value) if "." in value else int(value)
            return lambda v: number
        if kind == "lit":
            lit = {"true": True, "false": False}.get(value)
            return lambda v: lit
        if kind == "ref":
            parts = value.split(".")
            if parts[0] not in CONDITION_ROOTS:
                raise self.error(
                    f"unknown name {parts[0]!r}; references start with "
                    f"{' or '.join(sorted(CONDITION_ROOTS))} (quote text literals)"
                )

            def resolve(v: Mapping[str, Any], parts: list[str] = parts) -> Any:
                value: Any = v.get(parts[0])
                for key in parts[1:]:
                    value = _lookup(value, key)
                return value

            return resolve
        raise self.error(f"unexpected {value!r}")


def parse_condition(source: str) -> Condition:
    """Parse *source*; raises ``ConditionError`` (a ``SpecError``) when it is malformed."""
    return Condition(source, _Parser(source).parse())


def referenced_steps(source: str) -> list[str]:
    """The step names a condition reads (``steps.NAME...``)."""
    return [
        value.split(".")[1]
        for kind, value in _tokenize(source)
        if kind == "ref" and value.startswith("steps.") and value.count(".") >= 1
    ]
