"""Preparation: what a spec's steps need checked and derived before any task runs.

The loader checks the spec's shape and (``sluiceway.load``) what it names;
``prepare`` runs that second check again for specs built in Python, then what
needs the run's options: ``--handler`` and ``input_stream`` links. It also answers, per step, which
handlers it streams to (``effective_refs``) and with which options.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._conditions import Condition, parse_condition
from .._errors import SpecError, SpecIssue
from .._load import check_references
from .._registry import handler_option_names, resolve_handler
from ..specs import Pipeline, PythonStep
from ..specs._dump import to_data
from ..specs._yaml import Locator
from ._modes import DEFAULT_OPTIONS, RunOptions

__all__ = ("Prepared", "effective_opts", "effective_refs", "prepare")


@attrs.frozen
class Prepared:
    """What ``prepare`` checked and derived from a spec, before any task runs."""

    conditions: Mapping[str, Condition]
    """Step name -> its parsed ``condition``."""
    followers: Mapping[str, tuple[str, ...]]
    """Upstream step name -> python steps that take its events (``input_stream``)."""


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
    ``input_stream`` links and ``--handler``.

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
    if issues:
        raise SpecError(issues)
    return Prepared(conditions, {k: tuple(v) for k, v in followers.items()})
