"""Typed structured output: an ``output_type`` as a forced tool, parsed as its input streams.

``OutputSpec.of(output_type)`` takes an attrs class, a ``TypedDict`` or a JSON
Schema (a dict) of an object. The model is offered one tool,
``final_output``, whose input schema is the type's; the step forces it. As
its input streams, ``partial_parser`` parses the JSON so far with ``jiter``'s
partial mode, trimmed so that every value extends the one before: an
unfinished number, literal or escape sequence is left out until it is whole.
Validators see each partial value with ``partial=True``, and the final one
with ``partial=False``; ``final`` structures it into the type (cattrs) or
checks it against the schema (jsonschema).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import jiter
import jsonschema

from ._typeschema import describe_error, is_typed_dict, schema_of, structure

__all__ = ("OUTPUT_TOOL_NAME", "OutputSpec", "OutputValidationError", "PartialJson")

#: The name of the forced tool whose input is the output.
OUTPUT_TOOL_NAME: Final = "final_output"

_NUMBER_CHARS: Final = frozenset("0123456789+-.eE")
# an unfinished escape at the end of a string: "\", "\u", "\u00", a high surrogate
# "\ud83d" alone or followed by an unfinished low one
_OPEN_ESCAPE_RE: Final = re.compile(
    r"(?:\\u[dD][89abAB][0-9a-fA-F]{2})?(?:\\(?:u[0-9a-fA-F]{0,3})?)?$"
)


class OutputValidationError(ValueError):
    """The structured output does not fit its type, or a validator refused it."""


class PartialJson:
    """Parses a JSON document as its pieces arrive: each result extends the one before.

    ``feed(piece)`` returns the value of everything fed so far (``None`` when it
    did not change, or nothing is parseable yet). Incremental: which parts of
    the text are inside a string is tracked piece by piece.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._text = ""
        self._in_string = False
        self._escaped = False
        self._last: Any = None

    def _scan(self, piece: str) -> None:
        in_string, escaped = self._in_string, self._escaped
        if not in_string and '"' not in piece:
            return
        for ch in piece:
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
        self._in_string, self._escaped = in_string, escaped

    def text(self) -> str:
        """Everything fed so far."""
        if self._parts:
            self._text += "".join(self._parts)
            self._parts.clear()
        return self._text

    def safe_prefix(self) -> str:
        """The text so far without an unfinished number, literal or escape at its end."""
        text = self.text()
        if self._in_string:
            match = _OPEN_ESCAPE_RE.search(text[-16:])
            if match and match.group(0):
                cut = len(text) - len(match.group(0))
                # the backslash must not itself be escaped: count the ones before it
                run = len(text[:cut]) - len(text[:cut].rstrip("\\"))
                if run % 2 == 0:
                    text = text[:cut]
            return text
        end = len(text)
        while end and text[end - 1] in _NUMBER_CHARS:
            end -= 1
        if end and text[end - 1].isalpha():  # an unfinished true/false/null: jiter drops it
            return text
        return text[:end]

    def feed(self, piece: str) -> Any:
        """Add *piece*; the value so far, or ``None`` when it did not change."""
        self._scan(piece)
        self._parts.append(piece)
        prefix = self.safe_prefix()
        if not prefix.strip():
            return None
        try:
            value = jiter.from_json(prefix.encode(), partial_mode="trailing-strings")
        except ValueError:
            return None
        if value == self._last:
            return None
        self._last = value
        return value


Validator = Callable[..., Any]
"""``validator(value, *, partial) -> value``: returns the value (maybe changed) or raises."""


@attrs.frozen(kw_only=True)
class OutputSpec:
    """A step's typed output: the output tool's definition, validation and partial parsing.

    Implements the engine's ``OutputTool`` protocol.
    """

    schema: dict[str, Any]
    """The JSON Schema of the output (an object): the output tool's input schema."""
    type: Any = None
    """The attrs class or ``TypedDict`` the output is structured into; ``None`` for a plain schema."""
    validators: tuple[Validator, ...] = ()
    """Called in order on each value, ``partial=True`` until the final one."""
    debounce: float | None = None
    """Seconds between ``PartialOutput`` events at least."""
    retries: int = 0
    """Times a final value that fails validation is sent back to the model to fix."""
    tool_name: str = OUTPUT_TOOL_NAME
    """The output tool's name."""
    description: str = "Give the final output. Call this exactly once, with the complete result."
    """The output tool's description."""

    @classmethod
    def of(
        cls,
        output_type: Any,
        *,
        validators: Sequence[Validator] = (),
        debounce: float | None = None,
        retries: int = 0,
    ) -> OutputSpec:
        """The spec of *output_type*: an attrs class, a ``TypedDict``, or a JSON Schema dict.

        Raises:
            TypeError: *output_type* is none of these, or not an object.
        """
        if isinstance(output_type, dict):
            schema, tp = output_type, None
            jsonschema.Draft202012Validator.check_schema(schema)
        elif (isinstance(output_type, type) and attrs.has(output_type)) or is_typed_dict(output_type):
            schema, tp = schema_of(output_type), output_type
        else:
            raise TypeError(
                f"output_type must be an attrs class, a TypedDict or a JSON Schema dict, got {output_type!r}"
            )
        if schema.get("type") != "object":
            raise TypeError(f"output_type must describe an object, got a schema of type {schema.get('type')!r}")
        return cls(schema=schema, type=tp, validators=tuple(validators), debounce=debounce, retries=retries)

    def definition(self) -> dict[str, Any]:
        """The output tool's Messages API definition."""
        return {"name": self.tool_name, "description": self.description, "input_schema": self.schema}

    def partial_parser(self) -> Callable[[str], Any]:
        """``feed(piece) -> value | None`` for one call's input: the partial value, validated with ``partial=True``.

        A partial value a validator refuses is not sent (``None``); the next may be.
        """
        parser = PartialJson()

        def feed(piece: str) -> Any:
            value = parser.feed(piece)
            if value is None or not self.validators:
                return value
            try:
                return self._validate(value, partial=True)
            except Exception:
                return None

        return feed

    def _validate(self, value: Any, *, partial: bool) -> Any:
        for validator in self.validators:
            result = validator(value, partial=partial)
            if inspect.isawaitable(result):
                raise TypeError("output validators must be synchronous")
            value = result
        return value

    def final(self, value: Any) -> Any:
        """The complete input as the output: structured or schema-checked, then validated.

        Raises:
            OutputValidationError: with every problem found.
        """
        if self.type is not None:
            try:
                value = structure(value, self.type)
            except Exception as exc:
                raise OutputValidationError(f"the output does not fit {self.type.__name__}: {describe_error(exc)}") from exc
        else:
            errors = sorted(
                jsonschema.Draft202012Validator(self.schema).iter_errors(value), key=lambda e: list(e.absolute_path)
            )
            if errors:
                problems = "; ".join(
                    f"{e.message} @ $" + "".join(f"[{p!r}]" for p in e.absolute_path) for e in errors
                )
                raise OutputValidationError(f"the output does not match the schema: {problems}")
        try:
            return self._validate(value, partial=False)
        except OutputValidationError:
            raise
        except Exception as exc:
            raise OutputValidationError(f"an output validator refused the output: {exc}") from exc
