"""``sluiceway.load`` / ``sluiceway.loads``: the spec loader plus checks that need
the registries (handler classes and their ``Options``, provider classes).

``sluiceway.specs`` is pure data and imports no handler; this facade imports the
handler classes a spec names to learn which ``stream_handler_opts`` they accept.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from ._conditions import parse_condition
from ._errors import SpecError, SpecIssue
from ._registry import (
    BUILTIN_PROVIDERS,
    RegistryError,
    handler_option_names,
    resolve_handler,
    resolve_provider,
)
from .specs import _model
from .specs._check import did_you_mean
from .specs._load import load_located, loads_located
from .specs._yaml import Locator, Path

__all__ = ("check_registry", "load", "loads")

_options_converter = cattrs.Converter(forbid_extra_keys=True)


def _refs(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


class _RegistryChecker:
    def __init__(self, locator: Locator) -> None:
        self.locator = locator
        self.issues: list[SpecIssue] = []
        self.classes: dict[str, type | None] = {}

    def add(self, path: Path, message: str, *, key: bool = False) -> None:
        issue = self.locator.issue(path, message, key=key)
        if issue not in self.issues:
            self.issues.append(issue)

    def handler_class(self, ref: str, path: Path) -> type | None:
        """The class, or ``None`` (reported) when the reference names nothing importable."""
        if ref not in self.classes:
            try:
                self.classes[ref] = resolve_handler(ref)
            except RegistryError as exc:
                self.classes[ref] = None
                self.add(path, str(exc))
        return self.classes[ref]

    def handlers(
        self,
        refs: tuple[str, ...],
        ref_path: Path,
        opts: Mapping[str, Any],
        opt_paths: dict[str, Path],
    ) -> None:
        classes = [(ref, self.handler_class(ref, ref_path)) for ref in refs]
        if not opts or not classes or any(cls is None for _, cls in classes):
            return
        declared = {ref: handler_option_names(cls) for ref, cls in classes}  # type: ignore[arg-type]  # every cls is a class: None returned above
        if any(names is None for names in declared.values()):
            return  # a handler without ``Options`` takes ``**opts``
        known: set[str] = set().union(*declared.values())  # type: ignore[arg-type]  # no None left: returned above
        label = ("handler " if len(refs) == 1 else "handlers ") + ", ".join(repr(r) for r in refs)
        for key in opts:
            if key not in known:
                self.add(
                    opt_paths[key],
                    f"unknown option for {label}{did_you_mean(key, known)}",
                    key=True,
                )
        for ref, cls in classes:
            self.option_values(ref, cls.Options, opts, opt_paths, ref_path)  # type: ignore[union-attr]  # each has Options: checked above

    def option_values(
        self,
        ref: str,
        options_cls: type,
        opts: Mapping[str, Any],
        opt_paths: dict[str, Path],
        ref_path: Path,
    ) -> None:
        """Structure and validate each option the handler declares, one at a time (for precise paths)."""
        hints = typing.get_type_hints(options_cls)
        for field in attrs.fields(options_cls):
            key = field.alias or field.name
            if key not in opts:  # a missing required option is the handler's to report at run time
                continue
            try:
                value = _options_converter.structure(opts[key], hints[field.name])
                if field.validator is not None:
                    field.validator(None, field, value)
            except cattrs.BaseValidationError as exc:
                detail = "; ".join(cattrs.transform_error(exc, path=key))
                self.add(opt_paths[key], f"invalid option for handler {ref!r}: {detail}")
            except (TypeError, ValueError) as exc:
                self.add(opt_paths[key], f"invalid value for handler {ref!r}: {_short(exc)}")

    def condition(self, source: str, path: Path) -> None:
        try:
            parse_condition(source)
        except SpecError as exc:
            for issue in exc.issues:
                self.add(path, f"invalid condition: {issue.message}")

    def check(self, spec: _model.Pipeline) -> None:
        defaults = spec.defaults
        default_refs = _refs(defaults.stream_handler)
        for index, step in enumerate(spec.steps):
            path: Path = ("steps", index)
            own = _refs(step.stream_handler)
            refs = own or default_refs
            ref_path = (*path, "stream_handler") if own else ("defaults", "stream_handler")
            # as the executor merges them: defaults' options only under the defaults' handlers
            opts: dict[str, Any] = {}
            opt_paths: dict[str, Path] = {}
            if not own or step.stream_handler == defaults.stream_handler:
                opts.update(defaults.stream_handler_opts)
                opt_paths.update({k: ("defaults", "stream_handler_opts", k) for k in opts})
            opts.update(step.stream_handler_opts)
            opt_paths.update(
                {k: (*path, "stream_handler_opts", k) for k in step.stream_handler_opts}
            )
            if refs:
                self.handlers(refs, ref_path, opts, opt_paths)
            elif step.stream_handler_opts:
                self.add(
                    (*path, "stream_handler_opts"),
                    "stream_handler_opts given but no stream_handler is set",
                )
            if step.condition is not None:
                self.condition(step.condition, (*path, "condition"))
            if isinstance(step, _model.LlmStep) and step.provider not in BUILTIN_PROVIDERS:
                try:
                    resolve_provider(step.provider)
                except RegistryError as exc:
                    self.add((*path, "provider"), str(exc))


def _short(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text if len(text) <= 120 else text[:117] + "..."


def check_registry(spec: _model.Pipeline, locator: Locator) -> list[SpecIssue]:
    """Issues with the handler and provider classes *spec* names, and their options."""
    checker = _RegistryChecker(locator)
    checker.check(spec)
    return checker.issues


def _checked(spec: _model.Pipeline, locator: Locator) -> _model.Pipeline:
    issues = check_registry(spec, locator)
    if issues:
        raise SpecError(sorted(issues, key=lambda i: (i.line or 0, i.column or 0)))
    return spec


def load(path: str | os.PathLike[str]) -> _model.Pipeline:
    """Load and fully check a pipeline spec file (see ``sluiceway.specs.load``), including
    that named handlers exist and accept their ``stream_handler_opts``.

    Raises:
        SpecError: with every issue (file, line, column, field path).
    """
    return _checked(*load_located(path))


def loads(text: str, *, source: str = "<string>", base_dir: str | None = None) -> _model.Pipeline:
    """Load and fully check a pipeline spec from YAML text (see ``load``)."""
    return _checked(*loads_located(text, source=source, base_dir=base_dir))
