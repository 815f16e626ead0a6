"""Name -> class registries for handlers and providers, plus dotted-path import.

Registries are read-only at run time (no global mutable state): built-in names
map to import paths, anything else is a dotted path to a user class. A
``python`` step's callable is found the same way (``resolve_callable``), or in
a module file next to the spec.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.v import format_exception

from ._errors import SluicewayError

__all__ = (
    "BUILTIN_HANDLERS",
    "BUILTIN_PROVIDERS",
    "RegistryError",
    "build_handlers",
    "handler_option_names",
    "import_object",
    "resolve_attr",
    "resolve_callable",
    "resolve_handler",
    "resolve_provider",
)

# The built-in tables hold import paths, not classes, on purpose: a run imports only the
# handlers and providers its spec names. The anthropic SDK (live mode) takes seconds to
# import and the console handler pulls in rich; a mock run or `sluiceway validate` needs
# neither. tests/test_handlers_registry.py checks that every path resolves.

#: Built-in handler names -> "module:Class".
BUILTIN_HANDLERS: Mapping[str, str] = {
    "simple": "sluiceway.handlers._simple:SimpleHandler",
    "console": "sluiceway.handlers._console:ConsoleHandler",
    "debug": "sluiceway.handlers._debug:DebugHandler",
    "file": "sluiceway.handlers._file:FileHandler",
    "buffer": "sluiceway.handlers._buffer:BufferHandler",
    "callback": "sluiceway.handlers._callback:CallbackHandler",
    "otel": "sluiceway.handlers._otel:OtelHandler",
}

#: Built-in provider names -> "module:Class".
BUILTIN_PROVIDERS: Mapping[str, str] = {
    "mock": "sluiceway.providers._mock:MockProvider",
    "claude": "sluiceway.providers._anthropic:AnthropicProvider",
    "anthropic": "sluiceway.providers._anthropic:AnthropicProvider",
    "replay": "sluiceway.providers._replay:ReplayProvider",
}


class RegistryError(SluicewayError, LookupError):
    """A handler or provider reference names nothing importable."""


def import_object(path: str) -> Any:
    """Import ``package.module:attr`` or ``package.module.attr``.

    Raises:
        RegistryError: naming the path and what was missing.
    """
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    else:
        module_name, _, attr_path = path.rpartition(".")
    if not module_name or not attr_path:
        raise RegistryError(f"{path!r} is not a dotted path like 'package.module.Name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import module {module_name!r} for {path!r}: {exc}") from exc
    return resolve_attr(obj, attr_path, f"module {module_name!r}")


def resolve_attr(obj: Any, attr_path: str, owner: str) -> Any:
    """Follow ``a.b.c`` from *obj*; *owner* names it in the error (``module 'x'``)."""
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RegistryError(f"{owner} has no attribute {attr_path!r}") from None
    return obj


def resolve_callable(ref: str, spec: Any) -> Any:
    """Import a ``python`` step's callable: a dotted path, or a module file next to the spec.

    ``helpers:fn`` names ``helpers.py`` in the spec's folder when no importable
    module ``helpers`` exists. The file is loaded on its own (``sys.path`` and
    ``sys.modules`` are left alone), once per call.

    Raises:
        RegistryError: neither an importable module nor a file next to the spec.
    """
    try:
        return import_object(ref)
    except RegistryError:
        module_name, _, attr_path = ref.partition(":") if ":" in ref else ref.rpartition(".")
        source = getattr(spec, "source", None)
        if not source or source == "<string>" or not module_name or "." in module_name:
            raise
        path = Path(source).parent / f"{module_name}.py"
        if not path.is_file():
            raise
    module_spec = importlib.util.spec_from_file_location(f"_sluiceway_spec_{module_name}", path)
    if module_spec is None or module_spec.loader is None:  # pragma: no cover - a .py file always has one
        raise RegistryError(f"cannot load {str(path)!r} for {ref!r}")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise RegistryError(f"cannot load {str(path)!r} for {ref!r}: {exc}") from exc
    return resolve_attr(module, attr_path, repr(str(path)))


def resolve_handler(ref: str) -> type:
    """Return the handler class for a built-in name or a dotted path."""
    path = BUILTIN_HANDLERS.get(ref)
    if path is None:
        if "." not in ref and ":" not in ref:
            known = ", ".join(sorted(BUILTIN_HANDLERS))
            raise RegistryError(f"unknown stream handler {ref!r}; expected one of {known} or a dotted path")
        path = ref
    cls = import_object(path)
    if not isinstance(cls, type):
        raise RegistryError(f"stream handler {ref!r} is not a class")
    return cls


def resolve_provider(ref: str) -> type:
    """Return the provider class for a built-in name or a dotted path."""
    path = BUILTIN_PROVIDERS.get(ref)
    if path is None:
        if "." not in ref and ":" not in ref:
            known = ", ".join(sorted(BUILTIN_PROVIDERS))
            raise RegistryError(f"unknown provider {ref!r}; expected one of {known} or a dotted path")
        path = ref
    cls = import_object(path)
    if not isinstance(cls, type):
        raise RegistryError(f"provider {ref!r} is not a class")
    return cls


def handler_option_names(cls: type) -> frozenset[str] | None:
    """The options a handler class accepts, or ``None`` when it does not declare them.

    Handlers declare options with a nested attrs class ``Options``.
    """
    options_cls = getattr(cls, "Options", None)
    if options_cls is None or not attrs.has(options_cls):
        return None
    return frozenset(a.alias or a.name for a in attrs.fields(options_cls))


_options_converter = cattrs.Converter(forbid_extra_keys=True)


def _structure_bool(value: Any, _: type) -> bool:
    # cattrs' default is bool(value), which reads "false" as True; options want a real bool.
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false, got {value!r}")


_options_converter.register_structure_hook(bool, _structure_bool)


def build_handlers(refs: Sequence[str], opts: Mapping[str, Any], context_for: Any) -> list[Any]:
    """Build fresh handler instances for one step of one run.

    Each handler receives the options its ``Options`` class declares; an option
    that no handler in *refs* declares is an error. Built-in handlers (and any
    class with ``Options``) are constructed as ``cls(options, context)``; other
    classes as ``cls(**opts)``.

    Args:
        refs: Handler names or dotted paths.
        opts: The step's ``stream_handler_opts``.
        context_for: ``callable(ref) -> HandlerContext``.
    """
    classes = [(ref, resolve_handler(ref)) for ref in refs]
    declared = [handler_option_names(cls) for _, cls in classes]
    if all(d is not None for d in declared):
        known = frozenset().union(*declared) if declared else frozenset()
        unknown = sorted(set(opts) - known)
        if unknown:
            raise RegistryError(
                f"unknown stream_handler_opts {', '.join(map(repr, unknown))} for "
                f"{', '.join(refs)}; known: {', '.join(sorted(known)) or 'none'}"
            )
    handlers = []
    for (ref, cls), names in zip(classes, declared, strict=True):
        if names is None:
            handlers.append(cls(**opts))
            continue
        mine = {k: v for k, v in opts.items() if k in names}
        try:
            options = _options_converter.structure(mine, cls.Options)
        except Exception as exc:  # cattrs raises ClassValidationError groups
            raise RegistryError(f"invalid options for stream handler {ref!r}: {_describe(exc)}") from exc
        handlers.append(cls(options, context_for(ref)))
    return handlers


def _describe(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_format_exception))
    return str(exc)


def _format_exception(exc: BaseException, type_: type | None) -> str:
    # cattrs says only "invalid value" for an attrs validator's ValueError; keep its message.
    text = format_exception(exc, type_)
    if isinstance(exc, ValueError) and str(exc) and str(exc) not in text:
        text = f"{text}: {exc}"
    return text
