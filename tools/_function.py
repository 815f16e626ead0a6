"""Function tools: ``@sluiceway.tool`` makes a Python function a tool the model can call.

The tool's name is the function's, its description the docstring's summary, and
its input JSON Schema comes from the parameters' type hints (a parameter's
description from an ``Annotated[X, "description"]`` hint or the docstring's
``Args:`` section). The model's input is validated with cattrs before the call.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from ._results import cap
from ._typeschema import converter, describe_error, schema_of, structure

__all__ = ("FunctionTool", "ToolInputError", "tool")

_ARGS_RE = re.compile(r"^\s*(?:Args|Arguments|Parameters):\s*$", re.M)
_ARG_LINE_RE = re.compile(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.+)$")


class ToolInputError(ValueError):
    """The model's input does not fit a function tool's parameters."""


def _doc_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """The docstring's description (before ``Args:``) and its per-argument descriptions."""
    if not doc:
        return "", {}
    text = inspect.cleandoc(doc)
    match = _ARGS_RE.search(text)
    head = text[: match.start()] if match else text
    args: dict[str, str] = {}
    if match:
        last = None
        for line in text[match.end():].splitlines():
            if line.strip() and not line.startswith(" "):
                break  # the next section (Returns:, Raises:...)
            found = _ARG_LINE_RE.match(line)
            if found:
                last = found.group(1)
                args[last] = found.group(2).strip()
            elif last and line.strip():
                args[last] += " " + line.strip()
    return " ".join(head.split()), args


@attrs.frozen(eq=False)
class FunctionTool:
    """A Python function offered to the model as a tool (made by ``@sluiceway.tool``).

    Calling it calls the function itself, so a decorated function stays usable as one.
    """

    function: Callable[..., Any]
    """The sync or async function."""
    name: str
    """The tool's name, as the model sees it."""
    description: str
    """What the tool does, for the model."""
    input_schema: dict[str, Any]
    """The JSON Schema of the input object (one property per parameter)."""
    timeout: float | None = None
    """Seconds one call may take; ``None``: the step's ``tool_timeout_ms``, else no limit."""
    _hints: dict[str, Any] = attrs.field(factory=dict, repr=False)
    _defaults: dict[str, Any] = attrs.field(factory=dict, repr=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def definition(self) -> dict[str, Any]:
        """The Messages API definition (name, description, input_schema)."""
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}

    def arguments(self, input: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of a call: *input* structured into the parameters' types.

        Raises:
            ToolInputError: a missing or unknown parameter, or a value of the wrong type.
        """
        if not isinstance(input, Mapping):
            raise ToolInputError(f"expected an object, got {type(input).__name__}")
        problems: list[str] = []
        unknown = sorted(set(input) - set(self._hints))
        if unknown:
            problems.append(f"unknown parameter(s) {', '.join(map(repr, unknown))}")
        kwargs: dict[str, Any] = {}
        for name, hint in self._hints.items():
            if name not in input:
                if name not in self._defaults:
                    problems.append(f"missing required parameter {name!r}")
                continue
            try:
                kwargs[name] = structure(input[name], hint)
            except Exception as exc:  # cattrs raises groups and plain TypeErrors alike
                problems.append(f"{name}: {describe_error(exc)}")
        if problems:
            raise ToolInputError("; ".join(problems))
        return kwargs

    async def call(self, input: Mapping[str, Any]) -> str:
        """Validate *input*, call the function (a sync one in a worker thread) and render its result.

        Raises:
            ToolInputError: the input does not fit (nothing was called).
            Exception: what the function raised.
        """
        kwargs = self.arguments(input)
        if inspect.iscoroutinefunction(self.function):
            result = await self.function(**kwargs)
        else:
            result = await trio.to_thread.run_sync(
                functools.partial(self.function, **kwargs), abandon_on_cancel=True
            )
        return cap(render_result(result))


def render_result(result: Any) -> str:
    """A tool's return value as the text the model sees: a string as it is, else JSON."""
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    return json.dumps(converter.unstructure(result), default=str, ensure_ascii=False)


def _make(function: Callable[..., Any], name: str | None, description: str | None,
          timeout: float | None) -> FunctionTool:
    if isinstance(function, FunctionTool):
        function = function.function
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function, include_extras=True)
    summary, arg_docs = _doc_parts(function.__doc__)
    properties: dict[str, Any] = {}
    required: list[str] = []
    param_hints: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {function.__name__!r}: *args and **kwargs cannot be described to a model")
        hint = hints.get(param.name, Any)
        try:
            schema = schema_of(hint)
        except TypeError as exc:
            raise TypeError(f"tool {function.__name__!r}, parameter {param.name!r}: {exc}") from None
        if "description" not in schema and param.name in arg_docs:
            schema = {**schema, "description": arg_docs[param.name]}
        properties[param.name] = schema
        param_hints[param.name] = hint
        if param.default is param.empty:
            required.append(param.name)
        else:
            defaults[param.name] = param.default
    input_schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        input_schema["required"] = required
    if timeout is not None and not timeout > 0:
        raise ValueError(f"tool timeout must be positive, got {timeout!r}")
    return FunctionTool(
        function=function,
        name=name or function.__name__,
        description=description or summary or function.__name__,
        input_schema=input_schema,
        timeout=timeout,
        hints=param_hints,
        defaults=defaults,
    )


@typing.overload
def tool(function: Callable[..., Any], /) -> FunctionTool: ...


@typing.overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Any:
    """Make a sync or async function a tool the model can call: ``@tool`` or ``@tool(name=...)``.

    Args:
        function: The function; its type hints give the input schema.
        name: The tool's name (default: the function's).
        description: What the tool does (default: the docstring's text before ``Args:``).
        timeout: Seconds one call may take (default: the step's ``tool_timeout_ms``).

    Returns:
        A ``FunctionTool``; calling it still calls the function.

    Raises:
        TypeError: a parameter's type has no JSON Schema (or is ``*args``/``**kwargs``).
    """
    if function is None:
        return lambda f: _make(f, name, description, timeout)
    return _make(function, name, description, timeout)


def as_function_tool(obj: Any) -> FunctionTool:
    """*obj* as a ``FunctionTool``: one already, or a plain function made one.

    Raises:
        TypeError: *obj* is neither.
    """
    if isinstance(obj, FunctionTool):
        return obj
    if callable(obj) and (inspect.isfunction(obj) or inspect.ismethod(obj)):
        return _make(obj, None, None, None)
    raise TypeError(f"expected a @sluiceway.tool function, got {obj!r}")
