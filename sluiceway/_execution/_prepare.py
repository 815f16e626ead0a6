"""Preparation: what a spec's steps need checked and derived before any task runs.

The loader checks the spec's shape and (``sluiceway.load``) what it names;
``prepare`` runs that second check again for specs built in Python, then what
needs the run's options: ``--handler``, ``input_stream`` links, and that every
model call offering ``Bash`` can run it in its sandbox (``bwrap`` is there, or
the step opted out). It also answers, per step, which handlers it streams to
(``effective_refs``) and with which options, and which options its model calls
run with (``model_options``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from .._conditions import Condition, parse_condition
from .._errors import SpecError, SpecIssue
from .._load import check_references
from .._ray import ray_unavailable
from .._registry import handler_option_names, resolve_handler
from ..specs import (
    ClaudeOptions,
    ClaudeSmartStep,
    ParallelClaudeStep,
    Pipeline,
    PythonStep,
    apply_preset,
)
from ..specs._dump import to_data
from ..specs._yaml import Locator
from ..tools import DEFAULT_SANDBOX, NO_BWRAP, find_bwrap
from ._modes import DEFAULT_OPTIONS, RunOptions

__all__ = (
    "Prepared",
    "effective_opts",
    "effective_refs",
    "merge_options",
    "model_options",
    "prepare",
)


@attrs.frozen
class Prepared:
    """What ``prepare`` checked and derived from a spec, before any task runs."""

    conditions: Mapping[str, Condition]
    """Step name -> its parsed ``condition``."""
    followers: Mapping[str, tuple[str, ...]]
    """Upstream step name -> python steps that take its events (``input_stream``)."""
    unsandboxed: tuple[str, ...] = ()
    """Steps (or ``parallel_claude`` branches) that offer ``Bash`` with ``sandbox: none``."""


def merge_options(defaults: ClaudeOptions, step: ClaudeOptions) -> ClaudeOptions:
    """``defaults`` under ``step``, field by field: a step's non-``None`` field wins."""
    return ClaudeOptions(
        **{
            f.name: (getattr(step, f.name) if getattr(step, f.name) is not None else getattr(defaults, f.name))
            for f in attrs.fields(ClaudeOptions)
        }
    )


def model_options(spec: Pipeline, step: Any, options: ClaudeOptions | None = None) -> ClaudeOptions:
    """The options a model call of *step* runs with: defaults < preset (``claude_smart``) < step.

    *options* replaces the step's own (a ``parallel_claude`` branch passes its
    options merged over the step's).
    """
    own = step.claude_options if options is None else options
    if isinstance(step, ClaudeSmartStep):
        own = apply_preset(step.preset, own)
    return merge_options(spec.defaults.claude_options, own)


def _model_calls(spec: Pipeline, step: Any) -> Iterator[tuple[str, str, ClaudeOptions]]:
    """``(path, field, options)`` of each kind of model call *step* makes (a branch each)."""
    if isinstance(step, PythonStep):
        return
    if isinstance(step, ParallelClaudeStep):
        for index, task in enumerate(step.parallel_tasks):
            own = merge_options(step.claude_options, task.claude_options)
            yield f"{step.name}.{task.id}", f"parallel_tasks[{index}].claude_options", model_options(spec, step, own)
        return
    yield step.name, "claude_options", model_options(spec, step)


def _offers_bash(options: ClaudeOptions) -> bool:
    allowed = options.allowed_tools or ()
    return "Bash" in allowed and "Bash" not in (options.disallowed_tools or ())


def effective_refs(step: Any, spec: Pipeline, options: RunOptions) -> tuple[str, ...]:
    """The handlers *step* streams to: ``--handler``, else the step's, else the defaults'."""
    if not options.stream or not step.stream:
        return ()
    if options.handlers is not None:
        return tuple(options.handlers)
    if options.handler_plan is not None and options.handler_plan.replaces(step.name):
        return ()
    ref = step.stream_handler if step.stream_handler is not None else spec.defaults.stream_handler
    if ref is None:
        return ()
    return (ref,) if isinstance(ref, str) else tuple(ref)


def effective_opts(
    step: Any, spec: Pipeline, refs: Sequence[Any], options: RunOptions | None, *, replaced: bool = False
) -> dict[str, Any]:
    """The handler options of *step* (the defaults' apply to the defaults' handlers only).

    With *replaced* (or ``--handler``), other handlers replace the configured ones: only the
    options they declare are kept.
    """
    defaults = spec.defaults
    if step.stream_handler is None or step.stream_handler == defaults.stream_handler:
        opts = {**defaults.stream_handler_opts, **step.stream_handler_opts}
    else:
        opts = dict(step.stream_handler_opts)
    if replaced or (options is not None and options.handlers is not None):
        # --handler replaces the configured handlers: keep only the options they declare
        declared: set[str] = set()
        for ref in refs:
            names = handler_option_names(resolve_handler(ref))
            if names is None:
                return {}
            declared |= names
        opts = {k: v for k, v in opts.items() if k in declared}
    return opts


def prepare(spec: Pipeline, options: RunOptions = DEFAULT_OPTIONS) -> Prepared:
    """Check what the loader checks with the registries, and what needs the run's options.

    The references a spec names (handlers and their options, callbacks, ``python``
    callables, providers, conditions) go through the same check as ``sluiceway.load``
    (``check_references``), so a spec built in Python meets it too; then
    ``input_stream`` links, ``--handler``, and ``bwrap``: a model call that offers
    ``Bash`` in the (default) ``bubblewrap`` sandbox needs ``bwrap`` on ``PATH``;
    without it the run fails here, before anything runs, saying how to install it
    or how to opt out (``sandbox: none``).

    Raises:
        SpecError: every problem found, one issue each.
        RegistryError: ``--handler`` (``options.handlers``) names no handler.
    """
    source = spec.source or "<spec>"
    workspace = os.fspath(options.workspace) if options.workspace is not None else spec.workspace_dir
    issues: list[SpecIssue] = check_references(to_data(spec), Locator(source), workspace=workspace)

    def problem(index: int, field: str, message: str) -> None:
        issues.append(SpecIssue(source, None, None, f"steps[{index}].{field}", message))

    for ref in options.handlers or ():
        resolve_handler(ref)  # once for the run, not once per step
    conditions: dict[str, Condition] = {}
    followers: dict[str, list[str]] = {}
    names = [s.name for s in spec.steps]
    unsandboxed: list[str] = []
    has_bwrap = find_bwrap() is not None
    for index, step in enumerate(spec.steps):
        if step.condition is not None:
            try:
                conditions[step.name] = parse_condition(step.condition)
            except SpecError:
                pass  # check_references reported it
        if isinstance(step, PythonStep) and step.input_stream is not None:
            if step.input_stream not in names[:index]:
                problem(index, "input_stream", f"{step.input_stream!r} is not an earlier step")
            elif isinstance(spec.steps[names.index(step.input_stream)], PythonStep):
                problem(index, "input_stream", f"{step.input_stream!r} is a python step; it has no event stream")
            else:
                followers.setdefault(step.input_stream, []).append(step.name)
        if options.executor == "ray" and step.type == "claude_batch":
            missing = ray_unavailable()
            if missing:
                problem(index, "batch_config.executor", f"--executor ray: {missing}")
        for path, field, opts in _model_calls(spec, step):
            if not _offers_bash(opts):
                continue
            if (opts.sandbox or DEFAULT_SANDBOX) == "none":
                unsandboxed.append(path)
            elif not has_bwrap:
                problem(index, f"{field}.allowed_tools", NO_BWRAP)
                break  # once per step, not once per branch
    if issues:
        raise SpecError(issues)
    return Prepared(conditions, {k: tuple(v) for k, v in followers.items()}, tuple(unsandboxed))
