"""The step actor: one step's model calls, streamed as enveloped events to its consumers.

``stream_step`` is what the executor calls for every model step. It turns the
provider's events into ``Delta``/``ToolUse``/``Message``... events with the
envelope (run_id, step, attempt, seq, at), sends them through the tee to every
consumer (handler actors, passthrough channels, the run's event stream),
accumulates the ``Response``, runs the tool-use loop and the retry loop, and
ends the stream with exactly one terminal event.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, Literal

import attrs
import trio

from sluiceway._errors import HandlerError, ProviderError, StreamInterruptedError

from ._actors import (
    HANDLER_CLOSE_TIMEOUT,
    TERMINAL_DELIVERY_TIMEOUT,
    ChannelRelay,
    HandlerWarning,
    handler_actor,
)
from ._channel import EventReceiver, open_event_channel
from ._events import (
    Cancelled,
    ContentBlock,
    Done,
    Event,
    Failed,
    Message,
    Metrics,
    Response,
    Retrying,
    StepStarted,
    TextBlock,
    ThinkingBlock,
    ToolResult,
    ToolResultBlock,
    ToolUse,
    ToolUseBlock,
    Usage,
    new_delta,
    new_thinking_delta,
    new_tool_input_delta,
)
from ._pricing import add_cost
from ._protocols import (
    HandlerPolicy,
    ModelRequest,
    Provider,
    ToolRunner,  # the protocol the tool-use loop calls (Toolbox implements it)
)
from ._provider_events import (
    BlockStart,
    BlockStop,
    InputJsonChunk,
    MessageDeltaInfo,
    MessageStart,
    MessageStop,
    TextChunk,
    ThinkingChunk,
)
from ._run import RunContext
from ._tee import DEFAULT_BUFFER_SIZE, Outlet, Tee

__all__ = (
    "DEFAULT_BUFFER_SIZE",
    "HANDLER_CLOSE_TIMEOUT",
    "TERMINAL_DELIVERY_TIMEOUT",
    "ChannelConsumer",
    "Consumer",
    "HandlerConsumer",
    "HandlerWarning",
    "RunContext",
    "ToolRunner",
    "stream_step",
)


@attrs.frozen
class HandlerConsumer:
    """A handler fed by its own actor, through its own bounded channel."""

    handler: Any
    """The ``Handler`` (``handle``, optional ``handle_batch``, ``aclose``)."""
    name: str = ""
    """The handler's name as configured, for warnings and ``HandlerError.handler``."""
    policy: HandlerPolicy = "block"
    """``block`` (lossless, backpressure) or ``coalesce`` (merge deltas when it lags)."""
    buffer_size: int = DEFAULT_BUFFER_SIZE
    """The channel's buffer (``stream_buffer_size``)."""


@attrs.frozen
class ChannelConsumer:
    """A channel the caller reads (passthrough input of a later step, or similar)."""

    send_channel: trio.MemorySendChannel[Event]
    """The send side; ``stream_step`` closes it after the terminal event."""
    policy: HandlerPolicy = "block"
    """``block``: events go straight into *send_channel*. ``coalesce``: through a relay actor
    with its own channel of ``buffer_size``, whose deltas merge while the reader lags."""
    buffer_size: int = DEFAULT_BUFFER_SIZE
    """For ``coalesce``: the relay's buffer."""


Consumer = HandlerConsumer | ChannelConsumer


#: Pieces a block keeps before joining them into one chunk (bounds the per-piece overhead:
#: a million 8-byte deltas kept as str objects would take ~60 MB beyond their text).
_CHUNK: Final = 1024


class _Block:
    """A content block being accumulated: ``text`` (joined so far) then ``parts`` (the latest pieces)."""

    __slots__ = ("kind", "name", "parsed", "parts", "signature", "text", "tool_use_id")

    def __init__(self, kind: str, tool_use_id: str | None, name: str | None) -> None:
        self.kind = kind
        self.tool_use_id = tool_use_id
        self.name = name
        self.parts: list[str] = []
        self.text = ""
        """The pieces joined so far, grown in place."""
        self.signature: str | None = None
        self.parsed: Any = _UNPARSED

    def compact(self) -> None:
        """Append the pieces so far to ``text`` (called every ``_CHUNK`` pieces, and by ``joined``).

        ``text`` is grown in place: with the attribute cleared, the local is the
        string's only reference, and CPython then resizes it rather than copying
        (a large string is ``realloc``'d, which the allocator moves by remapping
        pages). A 1,000,000-delta text thus peaks at once its size, where joining
        a list of chunks at the end held the chunks and the result together (twice).
        Anyone else holding ``text`` (a partial response) costs one copy, not
        correctness.
        """
        if not self.parts:
            return
        tail = "".join(self.parts)
        self.parts.clear()
        text = self.text
        self.text = ""
        text += tail
        self.text = text

    def joined(self) -> str:
        """The block's text so far."""
        self.compact()
        return self.text


class _Attempt:
    """What one attempt produced so far."""

    __slots__ = ("blocks", "delta_count", "messages", "model", "stop_reason", "usage")

    def __init__(self) -> None:
        self.blocks: dict[int, _Block] = {}
        """The blocks of the call in progress (their text counts in a partial response)."""
        self.messages: list[Message] = []
        self.usage = Usage()
        self.model: str | None = None
        self.stop_reason: str | None = None
        self.delta_count = 0


class _StepRun:
    """The state of one ``stream_step`` call: envelope, accumulators, metrics."""

    def __init__(
        self,
        run: RunContext,
        path: str,
        tee: Tee,
        cost: Callable[[str | None, Usage], float | None] | None,
    ) -> None:
        self.run = run
        self.run_id = run.run_id
        self.origin = run.origin
        self.path = path
        self.tee = tee
        self.cost = cost
        self.seq = 0
        self.attempt_no = 1
        self.attempt = _Attempt()
        self.started = trio.current_time()
        self.first_token: float | None = None
        self.open_usage: Usage | None = None
        """The usage of the call in progress (counted in a partial response)."""
        self.superseded_usage = Usage()
        """The usage of the attempts retries superseded."""
        self.superseded_cost: float | None = 0.0
        self.status = "ok"
        self.handler_failure: HandlerError | None = None

    # -- envelope ------------------------------------------------------------

    def now(self) -> float:
        return trio.current_time() - self.origin

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def emit(self, cls: type[Event], **fields: Any) -> Event:
        self.seq += 1
        event = cls(
            run_id=self.run_id, step=self.path, attempt=self.attempt_no, seq=self.seq, at=self.now(), **fields
        )
        await self.tee.send(event)
        return event

    # -- results -------------------------------------------------------------

    def response(self) -> Response:
        """The response of the current attempt (also the partial one)."""
        attempt = self.attempt
        end = trio.current_time()
        usage = attempt.usage if self.open_usage is None else attempt.usage + self.open_usage
        tps = None
        if self.first_token is not None and end > self.first_token and usage.output_tokens:
            tps = usage.output_tokens / (end - self.first_token)
        metrics = Metrics(
            time_to_first_token=None if self.first_token is None else self.first_token - self.started,
            duration=end - self.started,
            output_tokens_per_second=tps,
            message_count=len(attempt.messages),
            delta_count=attempt.delta_count,
            backpressure_wait=self.tee.backpressure_wait,
            queue_high_water=self.tee.queue_high_water,
        )
        return Response(
            text=_text(attempt),
            messages=tuple(attempt.messages),
            usage=usage,
            cost_usd=self._cost(attempt.model, usage),
            stop_reason=attempt.stop_reason,
            model=attempt.model,
            metrics=metrics,
            status=self.status,
            superseded_usage=self.superseded_usage,
            superseded_cost_usd=self.superseded_cost,
        )

    def _cost(self, model: str | None, usage: Usage) -> float | None:
        if self.cost is None:
            return None
        try:
            return self.cost(model, usage)
        except Exception:  # a pricing bug must not lose the step's terminal event
            return None

    # -- one model call --------------------------------------------------------

    async def call(self, provider: Provider, request: ModelRequest) -> Message:
        """Stream one model call; return its assistant ``Message`` (also emitted)."""
        run_id, path, attempt_no, origin = self.run_id, self.path, self.attempt_no, self.origin
        tee = self.tee
        offer = tee.offer  # the tee's send without a coroutine while every outlet has room
        attempt = self.attempt
        blocks: dict[int, _Block] = {}
        attempt.blocks = blocks
        call_usage = Usage()
        stop_reason: str | None = None
        current_time = trio.lowlevel.current_clock().current_time  # skips a wrapper per event
        async with provider.stream(request) as provider_events:
            async for item in provider_events:
                kind = type(item)
                if kind is TextChunk:
                    now = current_time()
                    if self.first_token is None:
                        self.first_token = now
                    self.seq += 1
                    piece = item.text
                    block = blocks.get(item.index) or _open_block(blocks, item.index, "text")
                    parts = block.parts
                    parts.append(piece)
                    if len(parts) >= _CHUNK:
                        block.compact()
                    attempt.delta_count += 1
                    event = new_delta(run_id, path, attempt_no, self.seq, now - origin, piece, item.index)
                    rest = offer(event)
                    if rest >= 0:
                        await tee.send_from(event, rest)
                elif kind is InputJsonChunk:
                    now = current_time()
                    if self.first_token is None:
                        self.first_token = now
                    self.seq += 1
                    block = blocks.get(item.index) or _open_block(blocks, item.index, "tool_use")
                    block.parts.append(item.partial_json)
                    if len(block.parts) >= _CHUNK:
                        block.compact()
                    attempt.delta_count += 1
                    event = new_tool_input_delta(
                        run_id, path, attempt_no, self.seq, now - origin, block.tool_use_id or "",
                        item.partial_json, item.index,
                    )
                    rest = offer(event)
                    if rest >= 0:
                        await tee.send_from(event, rest)
                elif kind is ThinkingChunk:
                    block = blocks.get(item.index) or _open_block(blocks, item.index, "thinking")
                    if item.signature is not None:
                        block.signature = item.signature
                    if item.text:
                        now = current_time()
                        if self.first_token is None:
                            self.first_token = now
                        self.seq += 1
                        block.parts.append(item.text)
                        if len(block.parts) >= _CHUNK:
                            block.compact()
                        attempt.delta_count += 1
                        event = new_thinking_delta(
                            run_id, path, attempt_no, self.seq, now - origin, item.text, item.index
                        )
                        rest = offer(event)
                        if rest >= 0:
                            await tee.send_from(event, rest)
                elif kind is BlockStart:
                    blocks[item.index] = _Block(item.kind, item.tool_use_id, item.name)
                elif kind is BlockStop:
                    block = blocks.get(item.index)
                    if block is not None and block.kind == "tool_use":
                        raw = block.joined()
                        try:
                            parsed = json.loads(raw) if raw.strip() else {}
                        except ValueError as exc:
                            error = ProviderError(
                                f"tool {block.name!r} ({block.tool_use_id}): input is not JSON: {raw[:200]!r}",
                                step=path,
                            )
                            raise error from exc
                        block.parsed = parsed
                        await self.emit(
                            ToolUse, tool_use_id=block.tool_use_id or "", name=block.name or "", input=parsed
                        )
                elif kind is MessageStart:
                    if item.model is not None:
                        attempt.model = item.model
                    call_usage = self.open_usage = item.usage
                elif kind is MessageDeltaInfo:
                    if item.stop_reason is not None:
                        stop_reason = item.stop_reason
                    if item.usage is not None:
                        call_usage = self.open_usage = _merge_usage(call_usage, item.usage)
                elif kind is MessageStop:
                    break
            else:
                raise _interrupted(path)
        content = tuple(_finish_block(blocks[i]) for i in sorted(blocks))
        attempt.blocks = {}
        attempt.usage = attempt.usage + call_usage
        self.open_usage = None
        attempt.stop_reason = stop_reason
        if attempt.model is None:
            attempt.model = request.model
        message = await self.emit(
            Message, role="assistant", content=content, usage=call_usage, stop_reason=stop_reason
        )
        attempt.messages.append(message)  # type: ignore[arg-type]
        return message  # type: ignore[return-value]


_UNPARSED: Any = object()


def _text(attempt: _Attempt) -> str:
    """The attempt's text: its text blocks, finished then open, in order.

    One text block (the common case) is its string itself, not a copy.
    """
    texts = [
        block.text
        for message in attempt.messages
        if message.role == "assistant"
        for block in message.content
        if type(block) is TextBlock
    ]
    texts += [block.joined() for block in attempt.blocks.values() if block.kind == "text"]
    return "".join(texts)


def _finish_block(block: _Block) -> ContentBlock:
    if block.kind == "text":
        return TextBlock(block.joined())
    if block.kind == "thinking":
        return ThinkingBlock(block.joined(), block.signature)
    parsed = block.parsed
    if parsed is _UNPARSED:  # a tool_use block that never stopped: parse what came
        raw = block.joined()
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            parsed = raw
    return ToolUseBlock(block.tool_use_id or "", block.name or "", parsed)


def _merge_usage(start: Usage, delta: Usage) -> Usage:
    """``message_delta`` usage is cumulative for the call: its counts replace, never add."""
    return Usage(
        delta.input_tokens or start.input_tokens,
        delta.output_tokens,
        delta.cache_creation_input_tokens or start.cache_creation_input_tokens,
        delta.cache_read_input_tokens or start.cache_read_input_tokens,
    )


def _open_block(blocks: dict[int, _Block], index: int, kind: str) -> _Block:
    """A chunk came without its ``content_block_start``: open the block it implies."""
    block = blocks[index] = _Block(kind, None, None)
    return block


def _interrupted(path: str) -> ProviderError:
    return StreamInterruptedError("the stream ended before message_stop", step=path)


def to_api_block(block: ContentBlock) -> dict[str, Any]:
    """Turn a content block of a ``Message`` back into a Messages API content dict."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ThinkingBlock):
        out: dict[str, Any] = {"type": "thinking", "thinking": block.thinking}
        if block.signature is not None:
            out["signature"] = block.signature
        return out
    if isinstance(block, ToolResultBlock):
        return {
            "type": "tool_result",
            "tool_use_id": block.tool_use_id,
            "content": block.content,
            "is_error": block.is_error,
        }
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    raise TypeError(f"unknown content block {block!r}")


async def _turns(
    state: _StepRun,
    provider: Provider,
    request: ModelRequest,
    tool_runner: ToolRunner | None,
    max_turns: int,
) -> Response:
    """One attempt: model calls, and tool calls between them, up to *max_turns* calls."""
    messages = list(request.messages)
    calls = 0
    while True:
        message = await state.call(provider, request)
        calls += 1
        if tool_runner is None or message.stop_reason != "tool_use":
            break
        tool_uses = [b for b in message.content if isinstance(b, ToolUseBlock)]
        if not tool_uses:
            break
        if calls >= max_turns:
            state.status = "max_turns"
            break
        results: list[dict[str, Any]] = []
        result_blocks: list[ToolResultBlock] = []
        last: Event | None = None
        for block in tool_uses:
            content, is_error = await tool_runner.run(block.name, block.input)
            last = await state.emit(
                ToolResult, tool_use_id=block.id, name=block.name, content=content, is_error=is_error
            )
            result_blocks.append(ToolResultBlock(block.id, content, is_error))
            results.append(
                {"type": "tool_result", "tool_use_id": block.id, "content": content, "is_error": is_error}
            )
        assert last is not None
        # the results as the user turn the model gets: kept in the Response, not sent as an event
        # (it carries the envelope of its last ToolResult)
        state.attempt.messages.append(
            Message(
                run_id=last.run_id, step=last.step, attempt=last.attempt, seq=last.seq, at=last.at,
                role="user", content=tuple(result_blocks),
            )
        )
        messages.append({"role": "assistant", "content": [to_api_block(b) for b in message.content]})
        messages.append({"role": "user", "content": results})
        request = attrs.evolve(request, messages=tuple(messages), turn=request.turn + 1)
    return state.response()


async def _attempts(
    state: _StepRun,
    provider: Provider,
    request: ModelRequest,
    tool_runner: ToolRunner | None,
    max_turns: int,
    retry: Any,
) -> Response:
    """The attempt loop: retry a failed attempt while *retry* says so."""
    if tool_runner is not None and not request.tools:
        request = attrs.evolve(request, tools=tuple(tool_runner.definitions()))
    model = request.model
    while True:
        attempt_request = request
        if request.attempt != state.attempt_no or request.model != model:
            attempt_request = attrs.evolve(request, attempt=state.attempt_no, model=model)
        try:
            return await _turns(state, provider, attempt_request, tool_runner, max_turns)
        except ProviderError as exc:
            error = exc if exc.step else exc.with_step(state.path)
            delay = None if retry is None else retry.decide(error, state.attempt_no)
            if delay is None:
                if error is exc:
                    raise
                raise error from exc.__cause__
            retry_after = error.retry_after
            if retry_after is not None and retry_after > delay:
                delay = float(retry_after)
            started = state.attempt.delta_count > 0 or bool(state.attempt.messages)
            next_attempt = state.attempt_no + 1
            superseded = state.response()  # what the attempt got (and was billed for) so far
            state.superseded_usage = state.superseded_usage + superseded.usage
            state.superseded_cost = add_cost(state.superseded_cost, superseded.cost_usd)
            await state.emit(
                Retrying,
                reason=error.message,
                delay=delay,
                output_may_have_started=started,
                next_attempt=next_attempt,
                usage=superseded.usage,
                cost_usd=superseded.cost_usd,
            )
            model_for = getattr(retry, "model_for", None)
            if model_for is not None:
                model = model_for(next_attempt, error, model) or model
            await trio.sleep(delay)
            state.attempt_no = next_attempt
            state.attempt = _Attempt()
            state.open_usage = None
            state.status = "ok"


Actor = tuple[EventReceiver[Event], Any, Outlet, str]
"""What a handler actor is started with: its channel, the handler, its outlet, its name."""


async def wire_consumers(
    consumers: Sequence[Consumer], run: RunContext
) -> tuple[list[Outlet], list[Actor], list[trio.MemorySendChannel[Event]], Outlet | None]:
    """Give each consumer its outlet; the caller starts the actors and owns every channel.

    Handlers get a bounded channel drained by a handler actor; ``coalesce`` channel
    consumers get a relay actor (which closes their channel); ``block`` channel
    consumers are sent to directly. The run's event stream, when there is one, gets
    its own clone, returned apart as the last item. Outlets drained by our own actors
    come first: after a cancellation they get the terminal event before any wait on
    a caller's channel (whose reader may be gone).

    Returns:
        ``(outlets, actors, given, run_outlet)``; *given* are the caller-side channels
        to close at the end.

    If building fails (or is cancelled), everything made so far is closed and the
    error propagates.
    """
    outlets: list[Outlet] = []
    actors: list[Actor] = []
    given: list[trio.MemorySendChannel[Event]] = []
    run_outlet: Outlet | None = None
    try:
        for consumer in consumers:
            if isinstance(consumer, HandlerConsumer):
                send, receive = open_event_channel(consumer.buffer_size)
                outlet = Outlet(
                    send,
                    coalesce=consumer.policy == "coalesce",
                    name=consumer.name,
                    buffer_size=consumer.buffer_size,
                )
                outlet.actor = True
                actors.append((receive, consumer.handler, outlet, consumer.name))
            elif consumer.policy == "coalesce":  # the relay actor closes it
                send, receive = open_event_channel(consumer.buffer_size)
                outlet = Outlet(send, coalesce=True, name="channel", buffer_size=consumer.buffer_size)
                outlet.actor = True
                actors.append((receive, ChannelRelay(consumer.send_channel), outlet, "channel"))
            else:
                given.append(consumer.send_channel)
                outlet = Outlet(
                    consumer.send_channel, name="channel", buffer_size=_size(consumer.send_channel)
                )
            outlets.append(outlet)
        outlets.sort(key=lambda o: not o.actor)
        if run.events is not None:
            try:
                events = run.events.clone()
            except trio.ClosedResourceError:
                pass  # the run's stream was already closed: nobody to tell
            else:
                given.append(events)
                run_outlet = Outlet(events, name="run events", buffer_size=_size(events))
    except BaseException:
        with trio.move_on_after(HANDLER_CLOSE_TIMEOUT, shield=True):
            await _abandon(consumers, outlets, given)
        raise
    return outlets, actors, given, run_outlet



async def stream_step(
    *,
    run: RunContext,
    path: str,
    provider: Provider,
    request: ModelRequest,
    consumers: Sequence[Consumer],
    step_type: str = "claude",
    tool_runner: ToolRunner | None = None,
    max_turns: int = 1,
    retry: Any = None,
    cost: Callable[[str | None, Usage], float | None] | None = None,
    on_handler_error: Literal["isolate", "fail"] = "isolate",
    finish: Callable[[Response], Awaitable[Response]] | None = None,
) -> Response:
    """Stream one step (its model calls, tool calls and retries) to *consumers*; return its Response.

    Events, in order: ``StepStarted``; per model call its deltas (``Delta``,
    ``ThinkingDelta``, ``ToolInputDelta``), a ``ToolUse`` per finished tool_use
    block and one assistant ``Message``; ``ToolResult`` per tool run; a
    ``Retrying`` before each new attempt; and exactly one terminal event last:
    ``Done(response)``, ``Failed(error, partial)`` or ``Cancelled(partial)``.
    Every event carries the envelope ``run_id``, ``step=path``, ``attempt``,
    ``seq`` (strictly increasing over the whole step) and ``at`` (seconds since
    ``run.origin``).

    Args:
        run: The run's id, clock origin and event stream (``run.events`` gets
            every event, policy ``block``, through a clone that is closed here).
        path: The step path (``draft``, ``batch[3]``, ``par.branch_a``).
        provider: Streams each model call; not closed here (the run owns it).
        request: The first call's request; later calls add the tool turns,
            later attempts set ``attempt`` (and maybe ``model``).
        consumers: ``HandlerConsumer``s (each fed by its own actor through its
            own bounded channel) and ``ChannelConsumer``s (the caller reads).
        step_type: Reported in ``StepStarted``.
        tool_runner: Runs the model's tool calls; without it a ``tool_use``
            stop ends the step like any other stop.
        max_turns: The most model calls per attempt; when the model still
            wants tools after that many, the step ends with
            ``Response(status="max_turns")`` (a ``Done``).
        retry: An object with ``decide(error, attempt) -> delay | None`` and
            optionally ``model_for(next_attempt, error, model) -> model``
            (``engine._retry.RetryPolicy``). ``None``: never retry. The delay
            is slept on trio's clock, at least the error's ``retry_after``.
        cost: ``cost(model, usage) -> USD | None`` for ``Response.cost_usd``.
        finish: ``await finish(response) -> response`` runs on the final
            response before ``Done`` (extraction, saving a session); what it
            raises fails the step (``Failed``, with the unfinished response as
            ``partial``).
        on_handler_error: ``isolate`` (a failing handler gets a
            ``HandlerWarning`` and no more events; the step goes on) or
            ``fail`` (the step fails with ``HandlerError`` naming it).

    Returns:
        The final attempt's ``Response`` (also sent in ``Done``).

    Raises:
        ProviderError: the provider failed (after retries); ``Failed`` was sent.
            Every error raised (and a ``trio.Cancelled`` propagating) carries the
            partial response as ``exc.partial`` (the ``Failed``/``Cancelled`` one).
        HandlerError: a handler failed under ``fail``; ``Failed`` was sent
            (when it failed only on the terminal event or in ``aclose``, the
            others got ``Done`` before this is raised).
        Exception: any other error of a call or a tool, after ``Failed``.

    Backpressure: a full ``block`` consumer blocks the step, and so the
    provider (a ``coalesce`` consumer merges deltas instead). Memory is bounded
    by the consumers' buffers, plus one merged delta per ``coalesce`` consumer.

    Closes every channel it was given or made (consumers see ``EndOfChannel``
    after the terminal event) and every handler (``aclose`` exactly once,
    shielded, bounded by ``HANDLER_CLOSE_TIMEOUT``), on success, error and
    cancellation alike; returns only once every handler actor has finished.

    Cancelled: the events in flight may be dropped, but every consumer still
    gets exactly one terminal event (shielded, bounded by
    ``TERMINAL_DELIVERY_TIMEOUT``): ``Cancelled(partial)``; or, when the
    cancellation came while ``Done`` was being delivered, ``Done`` (a handler
    that lost events in flight then gets ``Cancelled`` with the ``Done``'s
    response as ``partial`` and the same ``seq``, so that its view never reads
    as a complete success it did not see). Then every handler is closed and
    the cancellation propagates. A terminal event waits for room in a
    caller's full channel at most that bound, after the handlers got theirs.

    Handler errors under ``isolate`` are reported with ``warnings.warn``; when
    warnings are errors (``-W error``) the step fails as under ``fail``.
    """
    outlets, actors, given, run_outlet = await wire_consumers(consumers, run)
    if run_outlet is not None:
        outlets.append(run_outlet)

    tee = Tee(outlets)
    state = _StepRun(run, path, tee, cost)
    produce_scope = trio.CancelScope()

    def fail(error: HandlerError) -> None:
        if state.handler_failure is None:
            state.handler_failure = error
        produce_scope.cancel()

    failure: BaseException | None = None
    response: Response | None = None
    terminal: Event | None = None
    try:
        async with trio.open_nursery() as nursery:
            for receive, handler, outlet, name in actors:
                nursery.start_soon(
                    partial(handler_actor, receive, handler, outlet, name=name, on_error=on_handler_error, fail=fail)
                )
            delivered: set[int] = set()
            try:
                try:
                    with produce_scope:
                        await state.emit(StepStarted, provider=provider.name, model=request.model, step_type=step_type)
                        response = await _attempts(state, provider, request, tool_runner, max(max_turns, 1), retry)
                        if finish is not None:
                            response = await finish(response)
                    if state.handler_failure is not None:
                        raise state.handler_failure
                    assert response is not None
                    terminal = Done(
                        run_id=state.run_id, step=path, attempt=state.attempt_no, seq=state.next_seq(),
                        at=state.now(), response=response,
                    )
                except Exception as exc:
                    failure = exc
                    response = None
                    terminal = Failed(
                        run_id=state.run_id, step=path, attempt=state.attempt_no, seq=state.next_seq(),
                        at=state.now(), error=exc, message=str(exc), partial=state.response(),
                    )
                    _attach_partial(exc, terminal.partial)
                await tee.send_each(terminal, delivered)
            except trio.Cancelled:
                with trio.move_on_after(TERMINAL_DELIVERY_TIMEOUT, shield=True):
                    if terminal is None:
                        terminal = Cancelled(
                            run_id=state.run_id, step=path, attempt=state.attempt_no, seq=state.next_seq(),
                            at=state.now(), partial=state.response(),
                        )
                    await tee.send_each(terminal, delivered)
                raise
            finally:
                for outlet in outlets:
                    outlet.send.close()
                for channel in given:
                    channel.close()
    except BaseException as exc:  # a cancellation arrives here as a group (the actors' and ours)
        _attach_partial(exc, _terminal_partial(terminal) if terminal is not None else state.response())
        raise
    if failure is not None:
        raise failure
    if state.handler_failure is not None:  # only aclose failed, after Done
        raise state.handler_failure
    assert response is not None
    return response


def _terminal_partial(terminal: Event) -> Response | None:
    """The response a terminal event carries (``Done.response``, else ``partial``)."""
    return getattr(terminal, "partial", None) or getattr(terminal, "response", None)


def _attach_partial(exc: BaseException, partial: Response | None) -> None:
    """Give the raised error the step's partial response (``exc.partial``), for the caller's files.

    An error that already carries one (an inner step's) keeps it.
    """
    if partial is not None and getattr(exc, "partial", None) is None:
        try:
            exc.partial = partial  # type: ignore[attr-defined]
        except AttributeError:  # an exception class with __slots__: nothing to attach to
            pass


def _size(channel: trio.MemorySendChannel[Event]) -> int:
    size = channel.statistics().max_buffer_size
    return int(size) if math.isfinite(size) else 0


async def _abandon(
    consumers: Sequence[Consumer],
    outlets: Sequence[Outlet],
    given: Sequence[trio.MemorySendChannel[Event]],
) -> None:
    """Setup failed: close what we were given, handlers included (call it shielded, bounded)."""
    for outlet in outlets:
        outlet.send.close()
    for consumer in consumers:
        if isinstance(consumer, ChannelConsumer):
            consumer.send_channel.close()
    for channel in given:
        channel.close()
    for consumer in consumers:
        if isinstance(consumer, HandlerConsumer):
            try:
                await consumer.handler.aclose()
            except Exception:
                pass
