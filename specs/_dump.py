"""Spec values -> canonical YAML (``dumps``), defaults left out.

Generic over attrs classes, so it needs no spec class: ``Pipeline.to_yaml`` calls it
without an import cycle between the model and the loader.
"""

from __future__ import annotations

from typing import Any

import attrs
import yaml

__all__ = ("dumps", "to_data")

_FIRST_KEYS = ("name", "type")


def to_data(value: Any) -> Any:
    """Plain data for a spec value, leaving out fields equal to their defaults."""
    if attrs.has(type(value)):
        out: dict[str, Any] = {}
        fields = attrs.fields(type(value))
        ordered = sorted(
            fields, key=lambda f: _FIRST_KEYS.index(f.name) if f.name in _FIRST_KEYS else 99
        )
        for field in ordered:
            if field.name == "source":
                continue
            item = getattr(value, field.name)
            default = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]  # attrs.Factory is a class at run time
                default = default.factory()
            if (
                field.name != "type"
                and default is not attrs.NOTHING
                and item == default
                and type(item) is type(default)
            ):
                continue
            out[field.alias or field.name] = to_data(item)
        return out
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    return value


def dumps(spec: Any) -> str:
    """The canonical YAML of *spec*; ``loads(dumps(spec)) == spec``."""
    return yaml.safe_dump(to_data(spec), sort_keys=False, allow_unicode=True, width=100)
