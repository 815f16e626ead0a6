"""A step's handlers: fresh instances for each step of each run, and their engine consumers."""

from __future__ import annotations

import os
import sys
from typing import Any, Final

from .._registry import build_handlers
from ..engine import DEFAULT_BUFFER_SIZE, HandlerConsumer, HandlerContext
from ._prepare import effective_opts, effective_refs
from ._state import ExecutionState

__all__ = ("STREAM_DEBUG_ENV", "build_consumers", "default_display")

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
    elif state.options.display:
        streams = state.options.stream and step.stream
        handlers = [default_display(state.handler_context(step.name, "display"), streams=streams)]
        names = ["display"]
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


def default_display(context: HandlerContext, *, streams: bool) -> Any:
    """The display of a step that has no handler (``RunOptions.display``).

    On a terminal, a streaming step gets the ``console`` view without its
    statistics panel (the run's summary has them): the answer as it arrives, a
    spinner while it waits, a batch's live progress. Piped (or for a step that
    does not stream) it is one plain line per step, so a log stays short and
    append-only; the full text is in the run's folder either way.
    """
    # deferred: rich and the handlers load when a step needs a display, not at start-up
    from ..handlers import ConsoleHandler
    from ..handlers._line import StepLineHandler

    stream = context.stdout if context.stdout is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    if streams and isatty is not None and isatty():
        # the step's failure: the summary names it (with its type), so the display only marks it
        return ConsoleHandler(ConsoleHandler.Options(show_stats=False), context, failure_cause=False)
    return StepLineHandler(context)
