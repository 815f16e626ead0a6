"""``sluiceway.load`` / ``sluiceway.loads``: the spec loader plus the checks that need
the registries: handler classes and their options, callback functions, python
step callables and providers, each found by one rule (``_registry.import_module``:
the Python path, then the spec's folder, then the workspace).

``sluiceway.specs`` is pure data and imports no handler; these checks run on the
spec's normalized plain data, so their issues arrive together with the spec's
own, each with its file and line. ``prepare`` runs the same checks before a run
(on a spec built in Python too), so a spec that validates does not fail them at
run time.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import cattrs

from ._conditions import parse_condition
from ._errors import SpecError, SpecIssue
from ._ray import ray_unavailable
from ._registry import (
    BUILTIN_PROVIDERS,
    RegistryError,
    handler_option_names,
    options_converter,
    resolve_callable,
    resolve_handler,
    resolve_provider,
    spec_search_path,
)
from .specs import _model
from .specs._check import did_you_mean
from .specs._load import load_located, loads_located
from .specs._validate import check_handler_ref, is_dotted
from .specs._yaml import Locator, Path

__all__ = ("check_references", "load", "loads")


def _refs(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(v for v in value if isinstance(v, str))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _ReferenceChecker:
    def __init__(self, locator: Locator, search: Sequence[str]) -> None:
        self.locator = locator
        self.search = tuple(search)
        self.issues: list[SpecIssue] = []
        self.classes: dict[str, type | None] = {}

    def add(self, path: Path, message: str, *, key: bool = False) -> None:
        issue = self.locator.issue(path, message, key=key)
        if issue not in self.issues:
            self.issues.append(issue)

    def handler_class(self, ref: str, path: Path) -> type | None:
        """The class, or ``None`` (reported) when the reference names nothing importable."""
        if check_handler_ref(ref) is not None:
            return None  # the spec's own check reports a malformed or unknown name
        if ref not in self.classes:
            try:
                self.classes[ref] = resolve_handler(ref, self.search)
            except RegistryError as exc:
                self.classes[ref] = None
                self.add(path, str(exc))
        return self.classes[ref]

    def handlers(
        self, refs: tuple[str, ...], ref_path: Path, opts: Mapping[str, Any], opt_paths: dict[str, Path]
    ) -> None:
        classes = [(ref, self.handler_class(ref, ref_path)) for ref in refs]
        if any(cls is None for _, cls in classes):
            return
        found = [(ref, cls) for ref, cls in classes if cls is not None]
        declared = {ref: handler_option_names(cls) for ref, cls in found}
        for ref, cls in found:
            if declared[ref] is None:  # a handler without ``Options`` is built as cls(**opts)
                self.signature(ref, cls, opts, opt_paths, ref_path)
        if not opts or any(names is None for names in declared.values()):
            return
        known: set[str] = set().union(*(n for n in declared.values() if n is not None))
        label = ("handler " if len(refs) == 1 else "handlers ") + ", ".join(repr(r) for r in refs)
        for key in opts:
            if key not in known:
                self.add(opt_paths[key], f"unknown option for {label}{did_you_mean(key, known)}", key=True)
        for ref, cls in found:
            self.option_values(ref, cls.Options, opts, opt_paths)  # type: ignore[attr-defined]  # declared
            if ref == "callback":
                self.callback(opts, opt_paths, ref_path)

    def signature(
        self, ref: str, cls: type, opts: Mapping[str, Any], opt_paths: dict[str, Path], ref_path: Path
    ) -> None:
        """A custom handler's constructor takes the options given (it is built as ``cls(**opts)``)."""
        try:
            parameters = inspect.signature(cls).parameters
        except (TypeError, ValueError):  # no signature to read (a builtin): leave it to run time
            return
        if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return
        takes = {name for name, p in parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        for key in opts:
            if key not in takes:
                self.add(
                    opt_paths[key],
                    f"handler {ref!r} does not take option {key!r}; its constructor takes "
                    f"{', '.join(sorted(takes)) or 'no options'}{did_you_mean(key, takes)}",
                    key=True,
                )
        for name, p in parameters.items():
            if p.default is p.empty and p.kind is not p.VAR_POSITIONAL and name not in opts:
                self.add(ref_path, f"handler {ref!r} needs option {name!r} in stream_handler_opts")

    def option_values(
        self, ref: str, options_cls: type, opts: Mapping[str, Any], opt_paths: dict[str, Path]
    ) -> None:
        """Structure and validate each option the handler declares, one at a time (for precise paths)."""
        hints = typing.get_type_hints(options_cls)
        for field in attrs.fields(options_cls):
            key = field.alias or field.name
            if key not in opts:  # a missing required option is the handler's to report at run time
                continue
            try:
                value = options_converter.structure(opts[key], hints[field.name])
                if field.validator is not None:
                    field.validator(None, field, value)
            except cattrs.BaseValidationError as exc:
                detail = "; ".join(cattrs.transform_error(exc, path=key))
                self.add(opt_paths[key], f"invalid option for handler {ref!r}: {detail}")
            except (TypeError, ValueError) as exc:
                self.add(opt_paths[key], f"invalid value for handler {ref!r}: {_short(exc)}")

    def callback(self, opts: Mapping[str, Any], opt_paths: dict[str, Path], ref_path: Path) -> None:
        """The ``callback`` handler's function exists and is callable."""
        function, module = opts.get("function"), opts.get("module")
        if not isinstance(function, str):
            return
        where = opt_paths.get("function", ref_path)
        path = f"{module}:{function}" if isinstance(module, str) else function
        if ":" not in path and "." not in path:
            self.add(where, f"callback function {function!r} needs a module: set `module`, or write `module:function`")
            return
        self.callable(path, where, "callback function")

    def callable(self, ref: str, path: Path, what: str) -> None:
        try:
            found = resolve_callable(ref, self.search)
        except RegistryError as exc:
            self.add(path, f"{what}: {exc}")
            return
        if not callable(found):
            self.add(path, f"{what} {ref!r} is not callable")

    def condition(self, source: str, path: Path) -> None:
        try:
            parse_condition(source)
        except SpecError as exc:
            for issue in exc.issues:
                self.add(path, issue.message)  # "condition '...': what is wrong"

    def step(self, step: dict[str, Any], path: Path, defaults: dict[str, Any]) -> None:
        default_refs = _refs(defaults.get("stream_handler"))
        own = _refs(step.get("stream_handler"))
        refs = own or default_refs
        ref_path = (*path, "stream_handler") if own else ("defaults", "stream_handler")
        # as the run merges them: the defaults' options only under the defaults' handlers
        opts: dict[str, Any] = {}
        opt_paths: dict[str, Path] = {}
        step_opts = _mapping(step.get("stream_handler_opts"))
        if not own or step.get("stream_handler") == defaults.get("stream_handler"):
            opts.update(_mapping(defaults.get("stream_handler_opts")))
            opt_paths.update({k: ("defaults", "stream_handler_opts", k) for k in opts})
        opts.update(step_opts)
        opt_paths.update({k: (*path, "stream_handler_opts", k) for k in step_opts})
        if refs:
            self.handlers(refs, ref_path, opts, opt_paths)
        elif step_opts:
            self.add((*path, "stream_handler_opts"), "stream_handler_opts given but no stream_handler is set")
        if isinstance(step.get("condition"), str):
            self.condition(step["condition"], (*path, "condition"))
        kind = step.get("type")
        provider = step.get("provider")
        if kind == "llm" and isinstance(provider, str) and provider not in BUILTIN_PROVIDERS and is_dotted(provider):
            try:
                resolve_provider(provider, self.search)
            except RegistryError as exc:
                self.add((*path, "provider"), str(exc))
        if kind == "python" and isinstance(step.get("callable"), str) and is_dotted(step["callable"]):
            self.callable(step["callable"], (*path, "callable"), "callable")
        self.tool_paths(step, path)
        if kind == "claude_batch":
            self.executor(step, path)
        for index, task in enumerate(step.get("parallel_tasks") or ()):
            if isinstance(task, dict):
                self.tool_paths(task, (*path, "parallel_tasks", index))

    def executor(self, step: dict[str, Any], path: Path) -> None:
        """``batch_config.executor: ray`` needs Ray installed, and runs tasks without tools."""
        config = _mapping(step.get("batch_config"))
        if config.get("executor") != "ray":
            return
        missing = ray_unavailable()
        if missing:
            self.add((*path, "batch_config", "executor"), missing)
        options = _mapping(step.get("claude_options"))
        for key in ("allowed_tools", "tools", "mcp_servers", "can_use_tool"):
            if options.get(key):
                self.add(
                    (*path, "claude_options", key),
                    f"executor: ray runs batch tasks without tools; {key} needs the local executor",
                )

    def tool_paths(self, owner: dict[str, Any], path: Path) -> None:
        """``claude_options.tools`` and ``can_use_tool`` name functions that exist."""
        options = _mapping(owner.get("claude_options"))
        tools = options.get("tools")
        for index, ref in enumerate(tools if isinstance(tools, list) else ()):
            if isinstance(ref, str) and is_dotted(ref):
                self.callable(ref, (*path, "claude_options", "tools", index), "tool")
        hook = options.get("can_use_tool")
        if isinstance(hook, str) and is_dotted(hook):
            self.callable(hook, (*path, "claude_options", "can_use_tool"), "can_use_tool")

    def check(self, data: dict[str, Any]) -> None:
        defaults = _mapping(data.get("defaults"))
        self.tool_paths(defaults, ("defaults",))
        steps = data.get("steps")
        for index, step in enumerate(steps if isinstance(steps, list) else ()):
            if isinstance(step, dict):
                self.step(step, ("steps", index), defaults)


def _short(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text if len(text) <= 120 else text[:117] + "..."


def check_references(data: dict[str, Any], locator: Locator, *, workspace: str | None = None) -> list[SpecIssue]:
    """Issues with what a spec's normalized *data* names: handler classes and their options,
    callback functions, python callables, providers and conditions.

    Modules are found by ``_registry.import_module``: the Python path, then the spec's
    folder (from *locator*'s file), then the workspace (*workspace*, else the spec's
    ``workspace_dir``).
    """
    workspace = workspace or (data.get("workspace_dir") if isinstance(data.get("workspace_dir"), str) else None)
    checker = _ReferenceChecker(locator, spec_search_path(locator.file, workspace))
    checker.check(data)
    return checker.issues


def load(path: str | os.PathLike[str]) -> _model.Pipeline:
    """Load and fully check a pipeline spec file (see ``sluiceway.specs.load``), including
    the handlers, callbacks, callables and providers it names.

    Raises:
        SpecError: with every issue (file, line, column, field path), all at once.
    """
    return load_located(path, extra_check=check_references)[0]


def loads(text: str, *, source: str = "<string>", base_dir: str | None = None) -> _model.Pipeline:
    """Load and fully check a pipeline spec from YAML text (see ``load``)."""
    return loads_located(text, source=source, base_dir=base_dir, extra_check=check_references)[0]
