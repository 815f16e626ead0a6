"""Name -> class registries for handlers and providers, plus dotted-path import.

Registries are read-only at run time (no global mutable state): built-in names
map to import paths, anything else is a dotted path to a user class. A
``python`` step's callable is found the same way (``resolve_callable``), or in
a module file next to the spec.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import cattrs
from cattrs.v import format_exception

from ._errors import SluicewayError
from .specs._check import did_you_mean

__all__ = (
    "BUILTIN_HANDLERS",
    "BUILTIN_PROVIDERS",
    "RegistryError",
    "build_handlers",
    "handler_option_names",
    "handler_ref_name",
    "import_module",
    "import_object",
    "options_converter",
    "resolve_attr",
    "resolve_callable",
    "resolve_handler",
    "resolve_provider",
    "spec_search_path",
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


def spec_search_path(source: str | None, workspace: str | None = None) -> tuple[str, ...]:
    """Where a spec's own modules are found after the Python path: its folder, then the workspace.

    Args:
        source: The spec's file (``Pipeline.source``); a ``<string>`` source has no folder.
        workspace: The workspace (``--workspace``, or ``workspace_dir`` relative to the spec).
    """
    dirs: list[str] = []
    if source and not source.startswith("<"):
        dirs.append(os.path.dirname(os.path.abspath(source)))
    if workspace:
        base = dirs[0] if dirs else os.getcwd()
        dirs.append(os.path.normpath(os.path.join(base, workspace)))
    return tuple(dict.fromkeys(dirs))


def import_module(name: str, search: Sequence[str] = ()) -> Any:
    """Import module *name* as Python does, else from the folders in *search*, in order.

    This is the one rule for every dotted path a spec names (handlers, callbacks,
    python steps, providers): a module beside the spec imports with no
    ``PYTHONPATH``. A module found in *search* is imported under its own name (a
    package's submodules import as usual); ``sys.path`` is left alone.

    Raises:
        RegistryError: naming the module and every place looked in.
    """
    top = name.partition(".")[0]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != top or top in sys.modules:
            raise RegistryError(f"cannot import module {name!r}: {exc}") from exc
        for folder in search:
            found = importlib.machinery.PathFinder.find_spec(top, [folder])
            if found is not None and found.loader is not None:
                break
        else:
            places = ", ".join(["the Python path", *search])
            raise RegistryError(f"no module named {name!r} (looked in {places})") from None
    module = importlib.util.module_from_spec(found)
    sys.modules[top] = module
    imported = False
    try:
        found.loader.exec_module(module)
        imported = True
    except Exception as exc:
        raise RegistryError(f"cannot import module {top!r} from {found.origin}: {exc}") from exc
    finally:
        if not imported:  # a failed import leaves nothing behind, as Python's own does
            del sys.modules[top]
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RegistryError(f"cannot import module {name!r}: {exc}") from exc


def import_object(path: str, search: Sequence[str] = ()) -> Any:
    """Import ``package.module:attr`` or ``package.module.attr`` (modules found by ``import_module``).

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
        obj = import_module(module_name, search)
    except RegistryError as exc:
        raise RegistryError(f"{exc} (for {path!r})") from exc.__cause__
    return resolve_attr(obj, attr_path, f"module {module_name!r}")


def resolve_attr(obj: Any, attr_path: str, owner: str) -> Any:
    """Follow ``a.b.c`` from *obj*; *owner* names it in the error (``module 'x'``)."""
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise RegistryError(f"{owner} has no attribute {attr_path!r}{did_you_mean(part, names)}") from None
    return obj


def resolve_callable(ref: str, search: Sequence[str] = ()) -> Any:
    """Import a ``python`` step's callable (``module:function``), by ``import_module``'s rule."""
    return import_object(ref, search)


def resolve_handler(ref: str | type, search: Sequence[str] = ()) -> type:
    """Return the handler class for a built-in name or a dotted path (a class is its own)."""
    if isinstance(ref, type):
        return ref
    path = BUILTIN_HANDLERS.get(ref)
    if path is None:
        if "." not in ref and ":" not in ref:
            known = ", ".join(sorted(BUILTIN_HANDLERS))
            raise RegistryError(f"unknown stream handler {ref!r}; expected one of {known} or a dotted path")
        path = ref
    cls = import_object(path, search)
    if not isinstance(cls, type):
        raise RegistryError(f"stream handler {ref!r} is not a class")
    return cls


def resolve_provider(ref: str, search: Sequence[str] = ()) -> type:
    """Return the provider class for a built-in name or a dotted path."""
    path = BUILTIN_PROVIDERS.get(ref)
    if path is None:
        if "." not in ref and ":" not in ref:
            known = ", ".join(sorted(BUILTIN_PROVIDERS))
            raise RegistryError(f"unknown provider {ref!r}; expected one of {known} or a dotted path")
        path = ref
    cls = import_object(path, search)
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


#: The converter handler options go through (a real bool for bool options, unknown keys refused).
options_converter = cattrs.Converter(forbid_extra_keys=True)


def _structure_bool(value: Any, _: type) -> bool:
    # cattrs' default is bool(value), which reads "false" as True; options want a real bool.
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false, got {value!r}")


options_converter.register_structure_hook(bool, _structure_bool)


def build_handlers(refs: Sequence[str | type], opts: Mapping[str, Any], context_for: Any) -> list[Any]:
    """Build fresh handler instances for one step of one run.

    Each handler receives the options its ``Options`` class declares; an option
    that no handler in *refs* declares is an error. Built-in handlers (and any
    class with ``Options``) are constructed as ``cls(options, context)``; other
    classes as ``cls(**opts)``.

    Args:
        refs: Handler names, dotted paths or handler classes.
        opts: The step's ``stream_handler_opts``.
        context_for: ``callable(ref) -> HandlerContext``.
    """
    classes = [(ref, resolve_handler(ref)) for ref in refs]
    declared = [handler_option_names(cls) for _, cls in classes]
    if all(d is not None for d in declared):
        known = frozenset[str]().union(*(d for d in declared if d is not None))
        unknown = sorted(set(opts) - known)
        if unknown:
            raise RegistryError(
                f"unknown stream_handler_opts {', '.join(map(repr, unknown))} for "
                f"{', '.join(map(handler_ref_name, refs))}; known: {', '.join(sorted(known)) or 'none'}"
            )
    handlers = []
    for (ref, cls), names in zip(classes, declared, strict=True):
        if names is None:
            handlers.append(cls(**opts))
            continue
        mine = {k: v for k, v in opts.items() if k in names}
        try:
            options = options_converter.structure(mine, cls.Options)  # type: ignore[attr-defined]  # names is not None: cls has Options
        except Exception as exc:  # cattrs raises ClassValidationError groups
            raise RegistryError(
                f"invalid options for stream handler {handler_ref_name(ref)!r}: {_describe(exc)}"
            ) from exc
        handlers.append(cls(options, context_for(ref)))
    return handlers


def handler_ref_name(ref: str | type) -> str:
    """How a handler reference is named in messages: the name itself, or a class's qualified name."""
    return ref if isinstance(ref, str) else f"{ref.__module__}.{ref.__qualname__}"


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
