"""Preparation: what a spec's steps need checked and derived before any task runs.

The loader checks the spec's shape; ``prepare`` checks what needs imports or
the run's options: conditions, handler references, ``python`` callables,
``input_stream`` links and ``llm`` providers. It also answers, per step, which
handlers it streams to (``effective_refs``) and with which options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._conditions import Condition, parse_condition
from .._errors import SpecError, SpecIssue
from .._registry import (
    RegistryError,
    handler_option_names,
    resolve_callable,
    resolve_handler,
    resolve_provider,
)
from ..specs import LlmStep, Pipeline, PythonStep
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
    """Check what the loader cannot: conditions, handler refs, callables, input streams.

    Raises:
        SpecError: every problem found, one issue each.
    """
    issues: list[SpecIssue] = []
    source = spec.source or "<spec>"

    def problem(index: int, field: str, message: str) -> None:
        issues.append(SpecIssue(source, None, None, f"steps[{index}].{field}", message))

    conditions: dict[str, Condition] = {}
    followers: dict[str, list[str]] = {}
    names = [s.name for s in spec.steps]
    for index, step in enumerate(spec.steps):
        if step.condition is not None:
            try:
                conditions[step.name] = parse_condition(step.condition)
            except SpecError as exc:
                problem(index, "condition", "; ".join(i.message for i in exc.issues))
        for ref in effective_refs(step, spec, options):
            try:
                resolve_handler(ref)
            except RegistryError as exc:
                problem(index, "stream_handler", str(exc))
        if isinstance(step, PythonStep):
            try:
                if not callable(resolve_callable(step.callable, spec)):
                    problem(index, "callable", f"{step.callable!r} is not callable")
            except RegistryError as exc:
                problem(index, "callable", str(exc))
            if step.input_stream is not None:
                if step.input_stream not in names[:index]:
                    problem(index, "input_stream", f"{step.input_stream!r} is not an earlier step")
                elif isinstance(spec.steps[names.index(step.input_stream)], PythonStep):
                    problem(index, "input_stream", f"{step.input_stream!r} is a python step; it has no event stream")
                else:
                    followers.setdefault(step.input_stream, []).append(step.name)
        if isinstance(step, LlmStep) and step.provider not in ("claude", "mock", "anthropic"):
            try:
                resolve_provider(step.provider)
            except RegistryError as exc:
                problem(index, "provider", str(exc))
    if issues:
        raise SpecError(issues)
    return Prepared(conditions, {k: tuple(v) for k, v in followers.items()})
