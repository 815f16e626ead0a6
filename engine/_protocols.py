"""The seams of the engine: providers produce, handlers consume, tool runners run tools.

The engine knows providers, handlers and tools only through these protocols; the
facade (``sluiceway``) builds concrete ones from a spec and hands them over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, TextIO, runtime_checkable

import attrs

from ._events import Event
from ._provider_events import ProviderEvent

__all__ = ("Handler", "HandlerContext", "HandlerPolicy", "ModelRequest", "OutputTool", "Provider", "ToolRunner")

HandlerPolicy = Literal["block", "coalesce"]


@attrs.frozen(kw_only=True)
class ModelRequest:
    """One call to a model: everything a provider needs, nothing it doesn't."""

    step: str
    """The step path, for error messages and attribution."""
    model: str
    """The model to ask."""
    messages: tuple[dict[str, Any], ...]
    """Messages API ``messages`` (role/content dicts)."""
    system: str | None = None
    """The system prompt."""
    max_tokens: int = 4096
    """The output cap."""
    temperature: float | None = None
    """Sampling temperature, when set."""
    tools: tuple[dict[str, Any], ...] = ()
    """Tool definitions (name, description, input_schema) offered to the model."""
    first_token_timeout: float | None = None
    """Seconds to wait for the first content event; ``None`` for no deadline."""
    idle_timeout: float | None = None
    """Seconds allowed between content events (pings are not progress)."""
    attempt: int = 1
    """The attempt this call belongs to (providers may script per-attempt faults)."""
    turn: int = 0
    """0-based index of this call within the step's tool-use loop."""
    mock: Any = None
    """The step's ``mock:`` block, for the mock provider; others ignore it."""
    extra: dict[str, Any] = attrs.field(factory=dict)
    """Provider-specific options."""


@runtime_checkable
class Provider(Protocol):
    """Streams one model call as provider events.

    ``stream(request)`` is an async context manager that yields an async
    iterator of ``ProviderEvent``; leaving the context closes the call (for HTTP,
    the connection) at once, also when cancelled. Errors are ``ProviderError``s.
    """

    name: str

    def stream(
        self, request: ModelRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[ProviderEvent]]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Handler(Protocol):
    """Consumes a step's events.

    A handler may also define ``async def handle_batch(self, events)``, which the
    engine then calls with every batch of events already waiting, and a class or
    instance attribute ``policy`` (``"block"``, the default, or ``"coalesce"``).
    ``aclose`` is called exactly once, shielded and bounded, even on error or
    cancellation; it must flush what it holds.

    A handler may also define a synchronous ``handle_nowait(self, event)``: while
    its actor has nothing waiting, the step calls it as the event is sent (no
    task switch, no scheduler pass; order holds). It must not block. Raising
    ``trio.WouldBlock`` (having done nothing) hands that event to ``handle`` /
    ``handle_batch`` instead; any other exception is a handler error, as from
    ``handle``.
    """

    async def handle(self, event: Event) -> None: ...

    async def aclose(self) -> None: ...


class BatchHandler(Handler, Protocol):
    async def handle_batch(self, events: Sequence[Event]) -> None: ...


@attrs.frozen(kw_only=True)
class HandlerContext:
    """What a handler knows about where it runs. One handler instance per step per run."""

    run_id: str
    """The run's id (also ``{{execution_id}}``)."""
    step: str
    """The path of the step this handler is attached to."""
    name: str
    """The handler reference as configured (``simple``, a dotted path...)."""
    pipeline: str = ""
    """The pipeline's name."""
    output_dir: str = "."
    """The pipeline's output folder; relative handler paths resolve inside it."""
    stdout: TextIO | None = None
    """Where console handlers write; ``None`` means ``sys.stdout`` at write time."""
    stderr: TextIO | None = None
    """Where diagnostics go; ``None`` means ``sys.stderr`` at write time."""
    started_wall: float = 0.0
    """``time.time()`` when the run started: ``started_wall + event.at`` is an event's wall time."""
    variables: dict[str, Any] = attrs.field(factory=dict)
    """The pipeline's variables, for templated options."""
    position: tuple[int, int] | None = None
    """``(i, n)``: the step is the i-th (from 1) of the run's n steps; ``None`` when unknown."""
    substeps: int | None = None
    """How many sub-steps a composite step (``claude_batch``, ``parallel_claude``) has, when known."""


@runtime_checkable
class ToolRunner(Protocol):
    """What the tool-use loop needs from a set of tools."""

    def definitions(self) -> tuple[dict[str, Any], ...]:
        """Return the Messages API tool definitions to offer to the model."""
        ...

    async def run(self, name: str, input: Mapping[str, Any]) -> tuple[str, bool]:
        """Run one tool call; return ``(content, is_error)``. Never raises for model errors."""
        ...

    # Optional: ``timeout_for(name) -> float | None``, the seconds one call of *name*
    # may take; past it the engine cancels the call and the model gets an error result.


@runtime_checkable
class OutputTool(Protocol):
    """Tool-based structured output: a tool whose input is the step's output.

    When the model calls ``tool_name``, the tool loop ends: the input is the
    output (``final``), and its pieces stream as ``PartialOutput`` events
    while the model writes it (``partial_parser``).
    """

    @property
    def tool_name(self) -> str:
        """The output tool's name."""
        ...

    @property
    def debounce(self) -> float | None:
        """Seconds between ``PartialOutput`` events at least; ``None``: one per change."""
        ...

    @property
    def retries(self) -> int:
        """How many times a final value that fails validation is sent back to the model to fix."""
        ...

    def partial_parser(self) -> Any:
        """A fresh ``feed(piece) -> value | None`` for one tool call's input (``None``: nothing new)."""
        ...

    def final(self, value: Any) -> Any:
        """The validated output of the complete input; raises when it is not valid."""
        ...
