"""Handlers given from Python: ``handlers=`` and ``on_event=`` of the Python API.

A *handler source* is a handler name or dotted path (as in YAML), a handler
class (built fresh for every step, with the step's options it declares), a
handler object (shared by the steps it applies to), or a plain or async
function (wrapped as the ``callback`` handler). ``handlers=`` takes one source,
a list of them, or a mapping ``{step_name: source or list}``; ``on_event=``
takes one source or a list.

A handler object is the caller's: every step it is attached to feeds it
through a per-step proxy whose ``aclose`` does nothing, and the run closes
the object itself once, when the run ends (shielded and bounded).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs
import trio

from ._errors import SpecError, SpecIssue
from ._execution._prepare import effective_opts
from ._registry import RegistryError, build_handlers, handler_ref_name, resolve_handler
from .engine import HandlerContext
from .engine._actors import direct_handle
from .specs import Pipeline

__all__ = ("HandlerPlan", "HandlersArg", "OnEventArg", "SharedHandler", "plan_handlers")

#: Seconds allowed for closing the caller's handler objects at the end of a run.
CLOSE_TIMEOUT: Final = 5.0

HandlerSource = Any
"""A name or dotted path, a handler class, a handler object, or a function."""
OnEventArg = HandlerSource | Sequence[HandlerSource] | None
HandlersArg = OnEventArg | Mapping[str, HandlerSource | Sequence[HandlerSource]]


@attrs.frozen
class _Source:
    kind: str
    """``ref`` (name or class: built by the registry), ``object`` or ``function``."""
    value: Any


def _source(item: Any, where: str) -> _Source:
    if isinstance(item, str):
        try:
            resolve_handler(item)
        except RegistryError as exc:
            raise SpecError([SpecIssue("<python>", None, None, where, str(exc))]) from exc
        return _Source("ref", item)
    if isinstance(item, type):
        return _Source("ref", item)
    if callable(getattr(item, "handle", None)):
        return _Source("object", item)
    if callable(item):
        return _Source("function", item)
    raise TypeError(
        f"{where}: expected a handler name, a handler class, a handler object or a function, got {item!r}"
    )


def _sources(value: Any, where: str) -> tuple[_Source, ...]:
    if value is None:
        return ()
    if isinstance(value, str | type) or not isinstance(value, Sequence):
        return (_source(value, where),)
    return tuple(_source(item, f"{where}[{i}]") for i, item in enumerate(value))


class SharedHandler:
    """A caller's handler object attached to one step.

    Events go straight to the object (its ``handle``, ``handle_batch``,
    ``handle_nowait`` and ``policy``); ``aclose`` does nothing, because the
    object may serve other steps: the run closes it once, at its end. Other
    attributes read through to the object (``result.handlers[step][0].text()``).
    """

    def __init__(self, target: Any) -> None:
        self.target = target
        """The caller's handler object."""
        self.policy = getattr(target, "policy", "block")
        self.handle = target.handle
        batch = getattr(target, "handle_batch", None)
        if batch is not None:
            self.handle_batch = batch
        self.handle_nowait = direct_handle(target)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)

    async def aclose(self) -> None:
        """Nothing: the run closes the object itself when it ends."""


@attrs.frozen
class HandlerPlan:
    """What ``handlers=`` and ``on_event=`` attach to a run's streaming steps."""

    every_step: tuple[_Source, ...] | None
    """``handlers=`` as one source or a list: replaces every streaming step's handlers."""
    per_step: Mapping[str, tuple[_Source, ...]]
    """``handlers=`` as a mapping: replaces the named steps' handlers only."""
    on_event: tuple[_Source, ...]
    """``on_event=``: added to every streaming step, after its handlers."""

    def replaces(self, step_name: str) -> bool:
        """Whether the spec's handlers of *step_name* are replaced."""
        return self.every_step is not None or step_name in self.per_step

    def objects(self) -> list[Any]:
        """The caller's handler objects, each once, in order of appearance."""
        seen: dict[int, Any] = {}
        groups = [self.every_step or (), *self.per_step.values(), self.on_event]
        for group in groups:
            for source in group:
                if source.kind == "object":
                    seen.setdefault(id(source.value), source.value)
        return list(seen.values())

    def build(
        self, step: Any, spec: Pipeline | None, context_for: Callable[[str], HandlerContext]
    ) -> list[tuple[Any, str]]:
        """Fresh ``(handler, name)`` pairs for *step*: its replacement handlers, then ``on_event``'s.

        Replacement handlers built from a name or class get the step's
        ``stream_handler_opts`` that they declare (as ``--handler`` does).
        """
        built: list[tuple[Any, str]] = []
        replacing = self.every_step if self.every_step is not None else self.per_step.get(step.name)
        if replacing:
            refs = [s.value for s in replacing if s.kind == "ref"]
            opts = effective_opts(step, spec, refs, None, replaced=True) if refs and spec is not None else {}
            built += _build(replacing, opts, context_for)
        built += _build(self.on_event, {}, context_for)
        return built

    async def aclose(self) -> None:
        """Close the caller's handler objects once each (shielded, bounded); failures warn."""
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            for handler in self.objects():
                try:
                    await handler.aclose()
                except Exception as exc:  # a failure to close is not a failure of the run
                    warnings.warn(
                        f"handler {type(handler).__name__} failed to close: {exc}", RuntimeWarning, stacklevel=1
                    )


def _build(
    sources: Sequence[_Source], opts: Mapping[str, Any], context_for: Callable[[str], HandlerContext]
) -> list[tuple[Any, str]]:
    refs = [s.value for s in sources if s.kind == "ref"]
    made = iter(build_handlers(refs, opts, lambda ref: context_for(handler_ref_name(ref))) if refs else ())
    built: list[tuple[Any, str]] = []
    for source in sources:
        if source.kind == "ref":
            built.append((next(made), handler_ref_name(source.value)))
        elif source.kind == "object":
            built.append((SharedHandler(source.value), type(source.value).__name__))
        else:
            from .handlers import CallbackHandler

            built.append((CallbackHandler.for_callable(source.value, context_for("callback")), "callback"))
    return built


def plan_handlers(handlers: HandlersArg, on_event: OnEventArg) -> HandlerPlan | None:
    """A ``HandlerPlan`` for the Python API's arguments, or ``None`` when they add nothing.

    Raises:
        SpecError: a handler name that names nothing.
        TypeError: an item that is no handler source.
    """
    every: tuple[_Source, ...] | None = None
    per_step: dict[str, tuple[_Source, ...]] = {}
    if isinstance(handlers, Mapping):
        per_step = {name: _sources(value, f"handlers[{name!r}]") for name, value in handlers.items()}
    elif handlers is not None:
        every = _sources(handlers, "handlers")
    hooks = _sources(on_event, "on_event")
    if every is None and not per_step and not hooks:
        return None
    return HandlerPlan(every, per_step, hooks)
