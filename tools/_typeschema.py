"""Python types to JSON Schema, and JSON values to Python types (validated with cattrs).

Function tools take their input schema from their parameters' type hints, and
typed output from its ``output_type``: both are made here. Supported: ``str``,
``int``, ``float``, ``bool``, ``None``, ``list[X]``, ``tuple[X, ...]``,
``dict[str, X]``, ``X | Y`` (``Optional``), ``Literal[...]``, ``Any``, attrs
classes, ``TypedDict`` classes, and ``Annotated[X, "description"]``.

Values are checked strictly (the model's ``"3"`` is not an ``int``) by this
module's own cattrs converter, never the global one.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, cast

import attrs
import cattrs
from cattrs.v import format_exception

__all__ = ("converter", "describe_error", "is_typed_dict", "schema_of", "structure")


def is_typed_dict(tp: Any) -> bool:
    """True for a ``TypedDict`` class."""
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__")


def _description(metadata: Sequence[Any]) -> str | None:
    for item in metadata:
        if isinstance(item, str):
            return item
        text = getattr(item, "description", None)  # annotated_types.doc / pydantic Field style
        if isinstance(text, str):
            return text
    return None


def schema_of(tp: Any) -> dict[str, Any]:
    """The JSON Schema of values of type *tp*.

    Raises:
        TypeError: *tp* is not a supported type.
    """
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *metadata = typing.get_args(tp)
        schema = schema_of(inner)
        text = _description(metadata)
        return {**schema, "description": text} if text else schema
    if tp is Any:
        return {}
    if tp is None or tp is type(None):
        return {"type": "null"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if origin is Literal:
        values = list(typing.get_args(tp))
        return {"enum": values}
    if origin in (Union, types.UnionType):
        options = [schema_of(a) for a in typing.get_args(tp)]
        return {"anyOf": options}
    if origin in (list, Sequence, typing.Sequence) or tp in (list,):
        args = typing.get_args(tp)
        return {"type": "array", "items": schema_of(args[0]) if args else {}}
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_of(args[0])}
        return {
            "type": "array", "prefixItems": [schema_of(a) for a in args],
            "minItems": len(args), "maxItems": len(args),
        }
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        args = typing.get_args(tp)
        return {"type": "object", "additionalProperties": schema_of(args[1]) if args else {}}
    if isinstance(tp, type) and attrs.has(tp):
        return _attrs_schema(tp)
    if is_typed_dict(tp):
        return _typed_dict_schema(tp)
    raise TypeError(f"cannot make a JSON Schema of {tp!r}")


def _attrs_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        if not field.init:
            continue
        name = field.alias or field.name
        properties[name] = schema_of(hints.get(field.name, Any))
        if field.default is attrs.NOTHING:
            required.append(name)
    return _object(properties, required, cls.__doc__)


def _typed_dict_fields(cls: type) -> tuple[dict[str, Any], set[str]]:
    """A TypedDict's keys -> their types (unwrapped), and the required keys."""
    hints = typing.get_type_hints(cls, include_extras=True)
    required_keys = set(getattr(cls, "__required_keys__", frozenset(hints)))
    fields: dict[str, Any] = {}
    for name, hint in hints.items():
        # a string annotation hides NotRequired / Required from __required_keys__ (3.11): read them here
        while typing.get_origin(hint) in (typing.NotRequired, typing.Required):
            if typing.get_origin(hint) is typing.NotRequired:
                required_keys.discard(name)
            else:
                required_keys.add(name)
            hint = typing.get_args(hint)[0]
        fields[name] = hint
    return fields, required_keys


def _typed_dict_schema(cls: type) -> dict[str, Any]:
    fields, required_keys = _typed_dict_fields(cls)
    properties = {name: schema_of(hint) for name, hint in fields.items()}
    return _object(properties, [k for k in fields if k in required_keys], cls.__doc__)


def _object(properties: dict[str, Any], required: list[str], doc: str | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    if doc and doc.strip():
        schema["description"] = " ".join(doc.strip().split("\n\n")[0].split())
    return schema


converter = cattrs.Converter(forbid_extra_keys=True)
"""The converter of tool inputs and typed output (strict scalars, no extra keys)."""


def _strict(expected: type | tuple[type, ...], name: str) -> Any:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
            raise TypeError(f"expected {name}, got {value!r}")
        if not isinstance(value, expected):
            raise TypeError(f"expected {name}, got {type(value).__name__} {value!r}")
        return float(cast(float, value)) if name == "a number" else value  # an int or a float: checked

    return hook


converter.register_structure_hook(str, _strict(str, "a string"))
converter.register_structure_hook(int, _strict(int, "an integer"))
converter.register_structure_hook(float, _strict((int, float), "a number"))
converter.register_structure_hook(bool, _strict(bool, "true or false"))


def _typed_dict_hook(cls: type) -> Any:
    # cattrs reads __required_keys__, which a string NotRequired annotation hides (3.11)
    fields, required_keys = _typed_dict_fields(cls)

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {type(value).__name__} {value!r}")
        errors: list[Exception] = []
        out: dict[str, Any] = {}
        for key in value:
            if key not in fields:
                errors.append(cattrs.ForbiddenExtraKeysError("", cls, {key}))
        for key, hint in fields.items():
            if key not in value:
                if key in required_keys:
                    error: Exception = KeyError(key)
                    error.__notes__ = [f"required field missing: {key!r} @ $.{key}"]
                    errors.append(error)
                continue
            try:
                out[key] = converter.structure(value[key], hint)
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), f"Structuring typeddict {cls.__name__} @ key {key!r}"]
                errors.append(exc)
        if errors:
            raise cattrs.ClassValidationError(f"While structuring {cls.__name__}", errors, cls)
        return out

    return hook


converter.register_structure_hook_factory(is_typed_dict, _typed_dict_hook)


def structure(value: Any, tp: Any) -> Any:
    """*value* (parsed JSON) as a *tp*, checked strictly.

    Raises:
        cattrs.BaseValidationError, TypeError, ValueError: *value* is not a *tp*.
    """
    return converter.structure(value, tp)


def describe_error(exc: BaseException) -> str:
    """One line per problem (``expected an integer, got str '3' @ $.a``), joined with ``; ``."""
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_format_exception))
    return str(exc)


def _format_exception(exc: BaseException, type_: type | None) -> str:
    text = format_exception(exc, type_)
    if str(exc) and str(exc) not in text:
        text = f"{text}: {exc}"
    return text
