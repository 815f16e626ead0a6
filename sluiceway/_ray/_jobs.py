"""What the driver ships to the actors and what comes back besides events (plain, picklable values)."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .._errors import SluicewayError
from ..engine import Delta, Failed, ModelRequest
from ..engine._events import new_delta

__all__ = ("ActorSettings", "BatchJob", "BatchTask", "TaskOutcome", "pack", "portable_error", "unpack")


@attrs.frozen(kw_only=True)
class ActorSettings:
    """How an actor opens its provider and streams each task (the same for every task of the step)."""

    mode: Literal["mock", "live"]
    """The run's mode: the actor opens this mode's provider, once, for all its tasks."""
    live_options: Mapping[str, Any] = attrs.field(factory=dict)
    """``live``: the ``AnthropicProvider``'s keyword arguments (never the key: that comes from the
    actor's environment)."""
    step_type: str = "claude_batch"
    """Reported in each sub-step's ``StepStarted``."""
    max_turns: int = 1
    """Each task's most model calls."""
    max_parallel: int = 3
    """Tasks streaming at once on one actor."""
    timeout_per_task: float | None = None
    """Seconds per task, as ``batch_config.timeout_per_task``."""
    free: bool = False
    """The calls cost nothing (mock mode)."""
    pricing: Mapping[str, Any] = attrs.field(factory=dict)
    """``defaults.pricing``: the price overrides."""
    flush_interval: float = 0.02
    """Seconds an actor waits after a batch's first event for more before it yields the batch."""
    flush_events: int = 128
    """Events in a batch that make it go at once."""


@attrs.frozen(kw_only=True)
class BatchTask:
    """One task: its index in the step, and its model request (the prompt already rendered)."""

    index: int
    request: ModelRequest


@attrs.frozen(kw_only=True)
class BatchJob:
    """A shard of the tasks given to one actor (or the tasks re-dispatched from a dead one)."""

    job_id: int
    """Unique within the step: ``cancel_job`` names it."""
    run_id: str
    """The driver's run id: every event's envelope carries it."""
    wall_origin: float
    """``time.time()`` at the driver's run start: events' ``at`` count from it (the driver's clock,
    as far as the machines' wall clocks agree)."""
    tasks: tuple[BatchTask, ...]


@attrs.frozen(kw_only=True)
class TaskOutcome:
    """Sent after a task's terminal event when the task raised something its events do not carry
    (``timeout_per_task``: the sub-step ends ``Cancelled``, the task fails with a timeout)."""

    step: str
    error: BaseException


def portable_error(error: BaseException) -> BaseException:
    """*error* itself when it survives pickling, else a ``SluicewayError`` with its type and message.

    (Some errors cannot be rebuilt from their pickle: those whose constructor has
    required keyword-only arguments, such as ``StepError``.)
    """
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        replacement = SluicewayError(f"{type(error).__name__}: {error}")
        replacement.step = getattr(error, "step", None)  # type: ignore[attr-defined]
        return replacement
    return error


def pack(item: Any) -> Any:
    """An actor's batch item as it travels: a ``Delta`` as a plain tuple (the bulk of the events:
    a tuple pickles an order of magnitude faster than the attrs value); a ``Failed`` with its
    error made portable; anything else as it is. ``unpack`` undoes it."""
    if type(item) is Delta:
        return (item.step, item.attempt, item.seq, item.at, item.content, item.index)
    if isinstance(item, Failed):
        error = portable_error(item.error)
        if error is not item.error:
            return attrs.evolve(item, error=error)
    return item


def unpack(item: Any, run_id: str) -> Any:
    """The event (or ``TaskOutcome``) *item* stands for (see ``pack``); *run_id* is the run's."""
    if type(item) is tuple:
        return new_delta(run_id, *item)
    return item
