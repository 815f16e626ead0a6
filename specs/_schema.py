"""JSON Schema (2020-12) for pipeline YAML, generated from the spec classes.

Walks ``attrs.fields`` and the resolved type hints; nothing here is written by
hand except the mapping of Python types to JSON types and the legacy keys
(marked ``deprecated``) that ``sluiceway migrate`` rewrites.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import attrs

from . import _model
from ._check import (
    NON_NEGATIVE_FIELDS,
    POSITIVE_FIELDS,
    TAGGED_UNIONS,
    UNIT_INTERVAL_FIELDS,
    field_types,
)

__all__ = ("json_schema",)

_SCHEMA_ID = "https://sluiceway.dev/schema/pipeline.json"


def _doc(cls: type, name: str) -> str | None:
    """The docstring under an attrs field, if the source has one."""
    return _field_docs(cls).get(name)


_DOC_CACHE: dict[type, dict[str, str]] = {}


def _field_docs(cls: type) -> dict[str, str]:
    if cls in _DOC_CACHE:
        return _DOC_CACHE[cls]
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not attrs.has(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, nxt in zip(body, body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    _DOC_CACHE[cls] = docs
    return docs


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}

    def type_schema(self, tp: Any, name: str = "") -> dict[str, Any]:
        if tp is Any:
            return {}
        if tp in TAGGED_UNIONS:
            return {"oneOf": [self.ref(cls) for cls in TAGGED_UNIONS[tp].values()]}
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.type_schema(a, name) for a in typing.get_args(tp)]}
        if tp is type(None):
            return {"type": "null"}
        if origin is Literal:
            return {"enum": list(typing.get_args(tp))}
        if origin is tuple:
            return {"type": "array", "items": self.type_schema(typing.get_args(tp)[0])}
        if origin is dict:
            _, value_tp = typing.get_args(tp)
            return {"type": "object", "additionalProperties": self.type_schema(value_tp)}
        if attrs.has(tp):
            return self.ref(tp)
        scalar: dict[str, Any] = {
            str: {"type": "string"},
            bool: {"type": "boolean"},
            int: {"type": "integer"},
            float: {"type": "number"},
        }[tp]
        scalar = dict(scalar)
        if tp in (int, float):
            if name in POSITIVE_FIELDS:
                scalar["exclusiveMinimum"] = 0
            elif name in NON_NEGATIVE_FIELDS:
                scalar["minimum"] = 0
            elif name in UNIT_INTERVAL_FIELDS:
                scalar.update(minimum=0, maximum=1)
        return scalar

    def ref(self, cls: type) -> dict[str, Any]:
        key = cls.__name__
        if key not in self.defs:
            self.defs[key] = {}  # placeholder against recursion
            self.defs[key] = self.class_schema(cls)
        return {"$ref": f"#/$defs/{key}"}

    def class_schema(self, cls: type) -> dict[str, Any]:
        hints = field_types(cls)
        props: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            if field.name == "source" or not field.init:
                continue
            key = field.alias or field.name
            prop = self.type_schema(hints[field.name], field.name)
            doc = _doc(cls, field.name)
            if doc:
                prop = {**prop, "description": doc}
            props[key] = prop
            tagged = any(cls in tags.values() for tags in TAGGED_UNIONS.values())
            if field.default is attrs.NOTHING or (field.name == "type" and tagged):
                required.append(key)
        schema: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
        }
        if cls.__doc__:
            schema["description"] = " ".join(cls.__doc__.split())
        if cls in _model.STEP_TYPES.values():
            props["id"] = {**props["name"], "description": "An alias of `name`."}
            for old, new in (("async_stream", "stream"), ("async_handler", "stream_handler")):
                props[old] = {
                    **props[new],
                    "deprecated": True,
                    "description": f"Deprecated: use `{new}`.",
                }
            required.remove("name")
            schema["oneOf"] = [{"required": ["name"]}, {"required": ["id"]}]
        if cls is _model.ParallelTask:
            props["name"] = {**props["id"], "description": "An alias of `id`."}
            required.remove("id")
            schema["oneOf"] = [{"required": ["id"]}, {"required": ["name"]}]
        if cls is _model.Pipeline:
            required.remove("name")  # defaults to the file's stem
        if cls is _model.ClaudeOptions:
            for old, new in (
                ("async_streaming", "stream"),
                ("stream_handler", "stream_handler"),
                ("stream_buffer_size", "stream_buffer_size"),
                ("stream_handler_opts", "stream_handler_opts"),
            ):
                base = self.type_schema(field_types(_model.ClaudeStep)[new], new)
                props[old] = {
                    **base,
                    "deprecated": True,
                    "description": f"Deprecated: set `{new}` on the step.",
                }
        if cls is _model.Pipeline:
            props["steps"] = {**props["steps"], "minItems": 1}
        if required:
            schema["required"] = required
        return schema


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of pipeline YAML, generated from the spec classes."""
    builder = _Builder()
    pipeline = builder.ref(_model.Pipeline)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": _SCHEMA_ID,
        "title": "sluiceway pipeline",
        "anyOf": [
            pipeline,
            {
                "type": "object",
                "properties": {"workflow": pipeline},
                "required": ["workflow"],
                "additionalProperties": False,
            },
        ],
        "$defs": builder.defs,
    }
