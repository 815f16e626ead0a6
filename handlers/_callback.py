"""The ``callback`` handler: each event to a user function, sync or async."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import attrs

from ..engine import Event, HandlerContext, HandlerPolicy
from ._base import HandlerConfigError

__all__ = ("CallbackHandler",)


def _load_function(module: str | None, function: str) -> Callable[[Event], Any]:
    if module is None:
        if ":" in function:
            module, _, function = function.partition(":")
        else:
            module, _, function = function.rpartition(".")
        if not module or not function:
            raise HandlerConfigError(
                f"callback handler: function {function!r} needs a module: set `module`, "
                "or write `function: package.module:function`"
            )
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise HandlerConfigError(f"callback handler: cannot import module {module!r}: {exc}") from exc
    for part in function.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HandlerConfigError(
                f"callback handler: module {module!r} has no function {function!r}"
            ) from None
    if not callable(obj):
        raise HandlerConfigError(f"callback handler: {module}:{function} is not callable")
    return obj


def _is_async(function: Callable[..., Any]) -> bool:
    # Async callable objects (``async def __call__``) count too.
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004
    )


class CallbackHandler:
    """Call a user function with each event, in order.

    The function is ``fn(event)``, plain or ``async def`` (detected once, at
    construction). A plain function runs on the event loop, so it must be quick
    (while nothing waits, it is called in the step's task, as ``handle_nowait``);
    an async one may await, and the step waits for it (policy ``block``: this
    is backpressure). Its exceptions propagate to the engine, which applies the
    step's ``on_handler_error`` policy.
    """

    policy: ClassVar[HandlerPolicy] = "block"
    """The function sees every event as it was sent."""

    handle_nowait: Callable[[Event], Any] | None = None
    """A plain function itself (the engine calls it in the step's task while nothing waits); None for an async one."""

    @attrs.frozen(kw_only=True)
    class Options:
        """``stream_handler_opts`` of the ``callback`` handler."""

        function: str
        """The function's name in ``module``, or ``package.module:function`` on its own."""
        module: str | None = None
        """The module that holds ``function``."""

    def __init__(self, options: CallbackHandler.Options, context: HandlerContext) -> None:
        self.options = options
        self.context = context
        self._use(_load_function(options.module, options.function))

    @classmethod
    def for_callable(cls, function: Callable[[Event], Any], context: HandlerContext) -> CallbackHandler:
        """A callback handler for a function object (``invoke(on_event=fn)``), not a name."""
        if not callable(function):
            raise HandlerConfigError(f"callback handler: {function!r} is not callable")
        self = cls.__new__(cls)
        name = getattr(function, "__qualname__", repr(function))
        self.options = cls.Options(function=name, module=getattr(function, "__module__", None))
        self.context = context
        self._use(function)
        return self

    def _use(self, function: Callable[[Event], Any]) -> None:
        self._function = function
        self._is_async = _is_async(function)
        self._closed = False
        if not self._is_async:
            self.handle_nowait = function

    async def handle(self, event: Event) -> None:
        """Call the function with *event*; await it when it is async."""
        if self._is_async:
            await self._function(event)
        else:
            self._function(event)

    async def handle_batch(self, events: Sequence[Event]) -> None:
        """Call the function once per event, in order.

        Blocks as long as the function does (policy ``block``: a slow function
        slows the step). Cancellation reaches an async function at its next
        checkpoint; the events after it in the batch are then not delivered.
        """
        for event in events:
            await self.handle(event)

    async def aclose(self) -> None:
        """Nothing to release. Idempotent."""
        self._closed = True
