"""Events: the protocol between steps, handlers and the user.

Every event is a frozen, slotted attrs value with the envelope ``run_id``,
``step``, ``attempt``, ``seq`` and ``at`` (see DESIGN.md, "The event protocol").
Run-level events (``RunStarted``, ``RunFinished``) use the empty step path ``""``.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

__all__ = (
    "Cancelled",
    "ContentBlock",
    "Delta",
    "Done",
    "Event",
    "Failed",
    "Message",
    "Metrics",
    "PartialOutput",
    "Response",
    "Retrying",
    "RunFinished",
    "RunStarted",
    "StepStarted",
    "TERMINAL_EVENTS",
    "TextBlock",
    "ThinkingBlock",
    "ThinkingDelta",
    "ToolInputDelta",
    "ToolResult",
    "ToolResultBlock",
    "ToolUse",
    "ToolUseBlock",
    "Usage",
)


# --------------------------------------------------------------------------- values


@attrs.frozen
class Usage:
    """Token counts, as the Messages API reports them."""

    input_tokens: int = 0
    """Prompt tokens not read from or written to the cache."""
    output_tokens: int = 0
    """Generated tokens."""
    cache_creation_input_tokens: int = 0
    """Prompt tokens written to the cache."""
    cache_read_input_tokens: int = 0
    """Prompt tokens read from the cache."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )


@attrs.frozen
class TextBlock:
    """A text content block of a whole message."""

    text: str
    """The block's full text."""
    type: Literal["text"] = "text"


@attrs.frozen
class ThinkingBlock:
    """A thinking content block of a whole message."""

    thinking: str
    """The block's full thinking text."""
    signature: str | None = None
    """The signature the API attached, when it did."""
    type: Literal["thinking"] = "thinking"


@attrs.frozen
class ToolUseBlock:
    """A tool_use content block of a whole message."""

    id: str
    """The tool_use id the API assigned."""
    name: str
    """The tool's name."""
    input: Any
    """The parsed JSON input (usually a dict)."""
    type: Literal["tool_use"] = "tool_use"


@attrs.frozen
class ToolResultBlock:
    """A tool_result content block: a tool's answer, sent back in a user turn."""

    tool_use_id: str
    """The tool_use id this answers."""
    content: str
    """The result text the model sees."""
    is_error: bool = False
    """True when the tool failed or refused."""
    type: Literal["tool_result"] = "tool_result"


ContentBlock = TextBlock | ThinkingBlock | ToolUseBlock | ToolResultBlock


@attrs.frozen
class Metrics:
    """What a step's stream measured. Times are seconds on the trio clock."""

    time_to_first_token: float | None = None
    """From the step's start to its first content delta; ``None`` if none came."""
    duration: float = 0.0
    """From the step's start to its terminal event."""
    output_tokens_per_second: float | None = None
    """Output tokens over the time from first token to the end."""
    message_count: int = 0
    """Whole messages (assistant turns and tool results) the step produced."""
    delta_count: int = 0
    """Content deltas (text, thinking, tool input) of the kept calls (none of a failed call's)."""
    backpressure_wait: float = 0.0
    """Seconds the step spent blocked on full consumer channels."""
    queue_high_water: int = 0
    """The most events ever waiting in any one consumer channel."""


@attrs.frozen
class Response:
    """The result of one step: what the seeds call the ``{:done, response}``."""

    text: str = ""
    """The concatenated text deltas of the kept calls (a retry supersedes only a failed call's)."""
    messages: tuple[Message, ...] = ()
    """Whole messages, in order (assistant turns, and tool results as user turns)."""
    usage: Usage = Usage()
    """Summed over every kept API call (a failed call's is in ``superseded_usage``)."""
    cost_usd: float | None = None
    """From the pricing table; ``None`` when the model's price is unknown."""
    stop_reason: str | None = None
    """The last message's stop reason (``end_turn``, ``tool_use``, ``max_tokens``...)."""
    model: str | None = None
    """The model that answered."""
    metrics: Metrics = Metrics()
    """Timing and flow measurements."""
    status: str = "ok"
    """``ok``, or a softer ending such as ``max_turns``."""
    output: Any = None
    """A structured result: extracted JSON, a python step's return value, batch results."""
    superseded_usage: Usage = Usage()
    """Summed over the failed calls a retry superseded (tokens billed for output that was
    discarded), as far as their streams reported it; not in ``usage``."""
    superseded_cost_usd: float | None = 0.0
    """The failed calls' cost (0.0 without retries); ``None`` when a price is unknown."""


# --------------------------------------------------------------------------- events


@attrs.frozen(kw_only=True)
class Event:
    """The envelope every event carries."""

    run_id: str
    """The run this event belongs to."""
    step: str
    """The step path (``draft``, ``batch[3]``, ``par.branch_a``); ``""`` for the run."""
    attempt: int = 1
    """1 for the first attempt, 2.. after a ``Retrying``."""
    seq: int = 0
    """Strictly increasing per step, across attempts."""
    at: float = 0.0
    """Seconds since the run started, on the trio clock."""


@attrs.frozen(kw_only=True)
class RunStarted(Event):
    """A run began."""

    pipeline: str
    """The pipeline's name."""
    steps: tuple[str, ...] = ()
    """The top-level step names, in order."""
    started_wall: float = 0.0
    """``time.time()`` when the run started (0.0 when unknown): ``started_wall + event.at`` is
    an event's wall time, for consumers that see the run's events but no ``HandlerContext``."""


@attrs.frozen(kw_only=True)
class RunFinished(Event):
    """A run ended. Always the run's last event."""

    status: Literal["ok", "failed", "cancelled"]
    """How the run ended."""
    summary: dict[str, Any] = attrs.field(factory=dict)
    """Per-step status, usage and cost, as in ``--json``."""


@attrs.frozen(kw_only=True)
class StepStarted(Event):
    """A step began: the seeds' "system/init" message."""

    provider: str
    """The provider's name (``mock``, ``anthropic``, ``replay``, ...)."""
    model: str | None = None
    """The model asked for."""
    step_type: str = "claude"
    """The spec's step type."""
    tasks: int | None = None
    """A composite step's number of sub-steps (batch tasks, parallel branches), when known;
    lets a viewer show progress before every sub-step has started."""
    replayed: bool = False
    """True when the step is not called again: its events are replayed from the response a
    run it resumes saved (``--resume``); its ``Done`` says so too."""


@attrs.frozen(kw_only=True)
class Delta(Event):
    """Text as it arrives: the seeds' ``{:delta, %{content: ...}}``."""

    content: str
    """The new text."""
    index: int = 0
    """The content block index in the current message."""


@attrs.frozen(kw_only=True)
class ThinkingDelta(Event):
    """Thinking text as it arrives."""

    content: str
    """The new thinking text."""
    index: int = 0
    """The content block index in the current message."""


@attrs.frozen(kw_only=True)
class ToolInputDelta(Event):
    """A piece of a tool call's JSON input."""

    tool_use_id: str
    """The tool_use id this piece belongs to."""
    partial_json: str
    """The piece; the pieces of one tool use concatenate to its JSON input."""
    index: int = 0
    """The content block index in the current message."""


@attrs.frozen(kw_only=True)
class Message(Event):
    """One whole turn, after its deltas."""

    role: Literal["assistant", "user"]
    """``assistant`` for model turns, ``user`` for tool results sent back."""
    content: tuple[ContentBlock, ...] = ()
    """The blocks of the message."""
    usage: Usage | None = None
    """The API call's usage, for assistant messages."""
    stop_reason: str | None = None
    """Why the model stopped, for assistant messages."""

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))


@attrs.frozen(kw_only=True)
class ToolUse(Event):
    """A complete tool call."""

    tool_use_id: str
    """The tool_use id."""
    name: str
    """The tool's name."""
    input: Any
    """The parsed JSON input."""


@attrs.frozen(kw_only=True)
class ToolResult(Event):
    """A tool's result."""

    tool_use_id: str
    """The tool_use id this answers."""
    name: str
    """The tool's name."""
    content: str
    """The result text the model sees."""
    is_error: bool = False
    """True when the tool failed or refused."""


@attrs.frozen(kw_only=True)
class PartialOutput(Event):
    """The step's structured output as it forms (tool-based structured output).

    Each value extends the one before (a string grows, an object gains keys, a
    list gains items); the last, with ``complete=True``, is the validated
    output that ``Response.output`` holds.
    """

    value: Any
    """The best value parsed from the output tool's input so far (validated, when complete)."""
    complete: bool = False
    """True for the final, validated value."""
    tool_use_id: str = ""
    """The output tool call whose input this is."""


@attrs.frozen(kw_only=True)
class Retrying(Event):
    """The failed model call's output is superseded; attempt ``next_attempt`` repeats that call.

    The calls finished before it stay (a retry resumes the tool loop); what is
    superseded is the step's deltas and ``ToolUse`` events since its last
    ``Message`` or ``ToolResult``.
    """

    reason: str
    """Why: the error's message."""
    delay: float
    """Seconds waited before the next attempt."""
    output_may_have_started: bool
    """True when the failed call had sent a delta or a ``ToolUse`` (now superseded)."""
    next_attempt: int
    """The attempt number that follows."""
    usage: Usage = Usage()
    """The failed call's usage, as far as its stream reported it (billed, then discarded)."""
    cost_usd: float | None = None
    """The failed call's cost; ``None`` when the model's price is unknown."""


@attrs.frozen(kw_only=True)
class Done(Event):
    """Terminal success: the seeds' ``{:done, response}``."""

    response: Response
    """The step's result."""
    replayed: bool = False
    """True when the response was not paid for by this run: a resumed run replayed it from
    the response an earlier run saved (the step's ``StepStarted`` says so too)."""

    def as_cancelled(self) -> Cancelled:
        """This ``Done`` as a consumer that lost some of the step's events must see it.

        A ``Cancelled`` with the same envelope and the response as ``partial``:
        an incomplete view must never read as a complete success. The one place
        this rewrite is made (handler actors and composite steps both use it).
        """
        return Cancelled(
            run_id=self.run_id, step=self.step, attempt=self.attempt, seq=self.seq, at=self.at,
            partial=self.response,
        )


@attrs.frozen(kw_only=True)
class Failed(Event):
    """Terminal failure."""

    error: BaseException = attrs.field(eq=False)
    """The error (a ``SluicewayError`` for expected failures)."""
    message: str = ""
    """``str(error)``, kept for serialisation."""
    partial: Response | None = None
    """What the failed attempt produced before it failed."""


@attrs.frozen(kw_only=True)
class Cancelled(Event):
    """Terminal cancellation."""

    partial: Response | None = None
    """What the step produced before it was cancelled."""


#: Exactly one of these ends every step's stream.
TERMINAL_EVENTS: tuple[type[Event], ...] = (Done, Failed, Cancelled)


# --------------------------------------------------------------------------- hot-path builders


def _builder(cls: type, fields: tuple[str, ...]) -> Any:
    """A positional builder of *cls* from *fields*, for the per-delta hot path.

    attrs' frozen ``__init__`` sets each field through ``object.__setattr__``
    looked up by name; this sets the slots through their descriptors, which is
    faster. The value is the same: the test suite checks each builder against
    the class's own ``__init__``.
    """
    slots = {f.name: _slot(cls, f.name) for f in attrs.fields(cls)}
    if set(slots) != set(fields):
        raise TypeError(f"{cls.__name__} has fields {sorted(slots)}, not {sorted(fields)}")
    setters = [slots[name].__set__ for name in fields]
    args = ", ".join(fields)
    body = "\n".join(f"    _s{i}(o, {name})" for i, name in enumerate(fields))
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    namespace.update({f"_s{i}": setter for i, setter in enumerate(setters)})
    exec(f"def build({args}):\n    o = _new(_cls)\n{body}\n    return o\n", namespace)  # noqa: S102
    build = namespace["build"]
    build.__qualname__ = build.__name__ = f"new_{cls.__name__}"
    build.__doc__ = f"``{cls.__name__}({', '.join(f'{n}={n}' for n in fields)})``, faster."
    return build


def _slot(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    raise TypeError(f"{cls.__name__} has no slot {name!r}")


new_delta = _builder(Delta, ("run_id", "step", "attempt", "seq", "at", "content", "index"))
new_thinking_delta = _builder(ThinkingDelta, ("run_id", "step", "attempt", "seq", "at", "content", "index"))
new_tool_input_delta = _builder(
    ToolInputDelta, ("run_id", "step", "attempt", "seq", "at", "tool_use_id", "partial_json", "index")
)
