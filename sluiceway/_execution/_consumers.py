"""A step's handlers: fresh instances for each step of each run, and their engine consumers."""

from __future__ import annotations

import os
from typing import Any, Final

from .._registry import build_handlers
from ..engine import DEFAULT_BUFFER_SIZE, HandlerConsumer
from ._prepare import effective_opts, effective_refs
from ._state import ExecutionState

__all__ = ("STREAM_DEBUG_ENV", "build_consumers")

#: Environment switch that adds the ``debug`` handler (on stderr) to every streaming step.
STREAM_DEBUG_ENV: Final = "SLUICEWAY_STREAM_DEBUG"


def build_consumers(state: ExecutionState, step: Any) -> tuple[list[Any], list[HandlerConsumer]]:
    """Fresh handler instances for *step*, and their engine consumers.

    Raises:
        RegistryError, ValueError, TypeError: a handler cannot be built from its options.
    """
    refs = effective_refs(step, state.spec, state.options)
    handlers: list[Any] = []
    names: list[str] = []
    if refs:
        opts = effective_opts(step, state.spec, refs, state.options)
        handlers = build_handlers(refs, opts, lambda ref: state.handler_context(step.name, ref))
        names = list(refs)
    plan = state.options.handler_plan
    if plan is not None and state.options.stream and step.stream:
        for handler, name in plan.build(step, state.spec, lambda ref: state.handler_context(step.name, ref)):
            handlers.append(handler)
            names.append(name)
    if state.options.stream and step.stream and os.environ.get(STREAM_DEBUG_ENV) == "1" and "debug" not in refs:
        handlers += build_handlers(["debug"], {"file": "stderr"}, lambda ref: state.handler_context(step.name, ref))
        names.append("debug")
    buffer_size = step.stream_buffer_size or state.spec.defaults.stream_buffer_size
    consumers = [
        HandlerConsumer(
            handler,
            name,
            getattr(handler, "policy", "block"),
            buffer_size or DEFAULT_BUFFER_SIZE,
        )
        for handler, name in zip(handlers, names, strict=True)
    ]
    return handlers, consumers
