"""The step actor: one step's model calls, tool calls and retries, streamed as enveloped events.

``stream_step`` is what the executor calls for every model step. It turns the
provider's events into ``Delta``/``ToolUse``/``Message``... events with the
envelope (run_id, step, attempt, seq, at) and sends them through the tee to
every consumer. The pieces it drives live beside it: ``_wiring`` (consumers to
outlets and handler actors), ``_accumulate`` (provider events to content
blocks, I/O-free) and ``_terminal`` (exactly one terminal event per consumer,
also when cancelled). Here are the loops: the call loop (``_StepRun.call``),
the tool loop (``_turns``) and the retry loop (``_call``), which repeats the
failed model call alone: a retry resumes the tool loop, it never redoes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import attrs
import trio

from sluiceway._errors import ProviderError, StreamInterruptedError

from ._accumulate import Attempt
from ._actors import (
    HANDLER_CLOSE_TIMEOUT,
    HANDLER_TIMEOUT,
    TERMINAL_DELIVERY_TIMEOUT,
    HandlerWarning,
)
from ._events import (
    Cancelled,
    ContentBlock,
    Done,
    Event,
    Failed,
    Message,
    Metrics,
    PartialOutput,
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
from ._output import OutputStream
from ._pricing import add_cost
from ._protocols import ModelRequest, OutputTool, Provider, ToolRunner
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
from ._tee import DEFAULT_BUFFER_SIZE, Tee
from ._terminal import Delivery, attach_partial, terminal_response
from ._wiring import ChannelConsumer, Consumer, HandlerConsumer, wire_consumers

__all__ = (
    "DEFAULT_BUFFER_SIZE",
    "HANDLER_CLOSE_TIMEOUT",
    "HANDLER_TIMEOUT",
    "TERMINAL_DELIVERY_TIMEOUT",
    "ChannelConsumer",
    "Consumer",
    "HandlerConsumer",
    "HandlerWarning",
    "RunContext",
    "ToolRunner",
    "stream_step",
    "to_api_block",
)

class _StepRun:
    """The state of one ``stream_step`` call: envelope, the calls' accumulation, metrics."""

    def __init__(
        self,
        run: RunContext,
        path: str,
        tee: Tee,
        cost: Callable[[str | None, Usage], float | None] | None,
    ) -> None:
        self.run_id = run.run_id
        self.origin = run.origin
        self.path = path
        self.tee = tee
        self.cost = cost
        self.seq = 0
        self.attempt_no = 1
        self.attempt = Attempt()
        """The kept calls (of every attempt) and the call in progress."""
        self.model: str | None = None
        """The model the next call asks for (a retry may switch it to a fallback; later calls keep it)."""
        self.started = trio.current_time()
        self.first_token: float | None = None
        self.superseded_usage = Usage()
        """The usage of the failed calls retries superseded."""
        self.superseded_cost: float | None = 0.0
        self.status = "ok"
        self.output_stream: OutputStream | None = None
        """Streams the output tool's input as ``PartialOutput`` (tool-based structured output)."""
        self.output: Any = None
        """The validated structured output, once the output tool was called."""

    def envelope(self) -> dict[str, Any]:
        """The next event's envelope (it takes the next ``seq``)."""
        self.seq += 1
        return {
            "run_id": self.run_id, "step": self.path, "attempt": self.attempt_no, "seq": self.seq,
            "at": trio.current_time() - self.origin,
        }

    async def emit(self, cls: type[Event], **fields: Any) -> Event:
        event = cls(**self.envelope(), **fields)
        await self.tee.send(event)
        return event

    def new_attempt(self, attempt_no: int) -> None:
        """Number the next events *attempt_no*: the retry of the failed call (already abandoned)."""
        self.attempt_no = attempt_no

    def response(self) -> Response:
        """The response so far: the kept calls and the call in progress (also the partial one)."""
        attempt = self.attempt
        end = trio.current_time()
        usage = attempt.total_usage()
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
            text=attempt.text(),
            messages=tuple(attempt.messages),
            usage=usage,
            cost_usd=self._response_cost(usage),
            stop_reason=attempt.stop_reason,
            model=attempt.model,
            metrics=metrics,
            status=self.status,
            output=self.output,
            superseded_usage=self.superseded_usage,
            superseded_cost_usd=self.superseded_cost,
        )

    def _response_cost(self, usage: Usage) -> float | None:
        """The cost of the kept calls and the call in progress, per model when a retry switched models."""
        attempt = self.attempt
        models = set(attempt.usage_by_model)
        if attempt.call_usage is not None:
            models.add(attempt.call_model or attempt.model or "")
        if len(models) <= 1:
            return self._cost(attempt.model, usage)
        total: float | None = 0.0
        for model, used in attempt.usage_by_model.items():
            total = add_cost(total, self._cost(model, used))
        if attempt.call_usage is not None:
            total = add_cost(total, self._cost(attempt.call_model or attempt.model, attempt.call_usage))
        return total

    def _cost(self, model: str | None, usage: Usage) -> float | None:
        if self.cost is None:
            return None
        try:
            return self.cost(model, usage)
        except Exception:  # a pricing bug must not lose the step's terminal event
            return None

    async def call(self, provider: Provider, request: ModelRequest) -> Message:
        """Stream one model call; return its assistant ``Message`` (also emitted)."""
        run_id, path, attempt_no, origin = self.run_id, self.path, self.attempt_no, self.origin
        tee = self.tee
        offer = tee.offer  # the tee's send without a coroutine while every outlet has room
        attempt = self.attempt
        attempt.begin_call()
        add_chunk = attempt.add_chunk
        current_time = trio.lowlevel.current_clock().current_time  # skips a wrapper per event
        item: Any  # dispatched on its exact type (no isinstance chain on the per-delta path)
        async with provider.stream(request) as provider_events:
            async for item in provider_events:
                kind = type(item)
                if kind is TextChunk or kind is ThinkingChunk or kind is InputJsonChunk:  # the hot path
                    block = add_chunk(item)
                    if block is None:
                        continue  # a signature alone: no delta
                    now = current_time()
                    if self.first_token is None:
                        self.first_token = now
                    self.seq += 1
                    if kind is TextChunk:
                        event = new_delta(run_id, path, attempt_no, self.seq, now - origin, item.text, item.index)
                    elif kind is ThinkingChunk:
                        event = new_thinking_delta(
                            run_id, path, attempt_no, self.seq, now - origin, item.text, item.index
                        )
                    else:
                        event = new_tool_input_delta(
                            run_id, path, attempt_no, self.seq, now - origin, block.tool_use_id or "",
                            item.partial_json, item.index,
                        )
                    rest = offer(event)
                    if rest >= 0:
                        await tee.send_from(event, rest)
                    if kind is InputJsonChunk and self.output_stream is not None and block.name == self.output_stream.tool_name:
                        await self.output_stream.feed(block.tool_use_id or "", item.partial_json)
                elif kind is BlockStart:
                    attempt.start_block(item)
                elif kind is BlockStop:
                    block = attempt.stop_block(item.index, step=path)
                    if block is not None:  # a tool call, complete
                        await self.emit(
                            ToolUse, tool_use_id=block.tool_use_id or "", name=block.name or "", input=block.parsed
                        )
                elif kind is MessageStart:
                    attempt.start_message(item)
                elif kind is MessageDeltaInfo:
                    attempt.update_message(item)
                elif kind is MessageStop:
                    break
            else:
                raise StreamInterruptedError("the stream ended before message_stop", step=path)
        usage, content = attempt.end_call(request.model)
        message = await self.emit(
            Message, role="assistant", content=content, usage=usage, stop_reason=attempt.stop_reason
        )
        attempt.messages.append(message)  # type: ignore[arg-type]  # emit(Message, ...) returns a Message
        return message  # type: ignore[return-value]  # emit(Message, ...) returns a Message


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
    retry: Any,
    output: OutputTool | None = None,
) -> Response:
    """The tool loop: model calls, and tool calls between them, up to *max_turns* calls.

    Each call is retried alone (``_call``): a retry never runs a finished
    call's tools again, and the calls before it stay in the response. With
    *output*, a call of its tool ends the loop: its input, validated, is the output.
    """
    if tool_runner is not None and not request.tools:
        request = attrs.evolve(request, tools=tuple(tool_runner.definitions()))
    state.model = request.model
    messages = list(request.messages)
    calls = 0
    state.output = None
    output_retries = output.retries if output is not None else 0
    while True:
        message = await _call(state, provider, request, retry)
        calls += 1
        results: list[ToolResultBlock] | None = None
        if output is not None:
            final = next((b for b in message.content if isinstance(b, ToolUseBlock) and b.name == output.tool_name), None)
            if final is not None:
                try:
                    state.output = output.final(final.input)
                except Exception as exc:
                    if output_retries <= 0 or calls >= max_turns:
                        raise
                    output_retries -= 1  # the step allows a retry: the model is told what to fix
                    results = await _tool_results(state, [(final.id, final.name, f"invalid output: {exc}", True)])
                else:
                    await state.emit(PartialOutput, value=state.output, complete=True, tool_use_id=final.id)
                    break
        if results is None:
            if tool_runner is None or message.stop_reason != "tool_use":
                break
            tool_uses = [b for b in message.content if isinstance(b, ToolUseBlock)]
            if not tool_uses:
                break
            if calls >= max_turns:
                state.status = "max_turns"
                break
            results = await _run_tools(state, tool_runner, tool_uses)
        messages.append({"role": "assistant", "content": [to_api_block(b) for b in message.content]})
        messages.append({"role": "user", "content": [to_api_block(b) for b in results]})
        request = attrs.evolve(request, messages=tuple(messages), turn=request.turn + 1)
    return state.response()


async def _run_tools(state: _StepRun, tool_runner: ToolRunner, tool_uses: list[ToolUseBlock]) -> list[ToolResultBlock]:
    """Run the model's tool calls in order, emitting a ``ToolResult`` each; return the result blocks.

    The results, as the user turn the model gets, are kept in the step's
    messages (not sent as an event; it carries the envelope of the last ``ToolResult``).
    """
    timeout_for = getattr(tool_runner, "timeout_for", None)
    answers: list[tuple[str, str, str, bool]] = []
    for block in tool_uses:
        timeout = timeout_for(block.name) if timeout_for is not None else None
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            content, is_error = await tool_runner.run(block.name, block.input)
        if scope.cancelled_caught:
            content, is_error = f"tool {block.name!r} timed out after {timeout:g} s", True
        answers.append((block.id, block.name, content, is_error))
    return await _tool_results(state, answers)


async def _tool_results(state: _StepRun, answers: list[tuple[str, str, str, bool]]) -> list[ToolResultBlock]:
    """Emit a ``ToolResult`` per ``(id, name, content, is_error)``; keep the user turn; return its blocks."""
    results: list[ToolResultBlock] = []
    last: Event | None = None
    for tool_use_id, name, content, is_error in answers:
        last = await state.emit(ToolResult, tool_use_id=tool_use_id, name=name, content=content, is_error=is_error)
        results.append(ToolResultBlock(tool_use_id, content, is_error))
    assert last is not None
    state.attempt.messages.append(
        Message(
            run_id=last.run_id, step=last.step, attempt=last.attempt, seq=last.seq, at=last.at,
            role="user", content=tuple(results),
        )
    )
    return results


async def _call(state: _StepRun, provider: Provider, request: ModelRequest, retry: Any) -> Message:
    """One model call of the tool loop, retried alone while *retry* says so.

    A retry is a new attempt (numbered on from the step's last) that repeats
    this call with the same conversation: the finished calls and their tool
    results are kept, never run or sent again. Only a model call's
    ``ProviderError`` is retried; an error of a tool fails the step.
    """
    while True:
        assert state.model is not None
        call_request = request
        if request.attempt != state.attempt_no or request.model != state.model:
            call_request = attrs.evolve(request, attempt=state.attempt_no, model=state.model)
        try:
            return await state.call(provider, call_request)
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
            next_attempt = state.attempt_no + 1
            await _supersede(state, error, delay, next_attempt, call_request.model)
            model_for = getattr(retry, "model_for", None)
            if model_for is not None:
                state.model = model_for(next_attempt, error, state.model) or state.model
            await trio.sleep(delay)
            state.new_attempt(next_attempt)


async def _supersede(state: _StepRun, error: ProviderError, delay: float, next_attempt: int, model: str) -> None:
    """Abandon the failed call (its output, and what it was billed, count as superseded); emit ``Retrying``.

    The kept calls are not superseded: ``output_may_have_started`` and the
    usage and cost in ``Retrying`` are the failed call's alone.
    """
    started = state.attempt.call_output_started()
    usage, call_model = state.attempt.abandon_call(model)
    cost = state._cost(call_model, usage)
    state.superseded_usage = state.superseded_usage + usage
    state.superseded_cost = add_cost(state.superseded_cost, cost)
    await state.emit(
        Retrying,
        reason=error.message,
        delay=delay,
        output_may_have_started=started,
        next_attempt=next_attempt,
        usage=usage,
        cost_usd=cost,
    )


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
    handler_timeout: float | None = HANDLER_TIMEOUT,
    finish: Callable[[Response], Awaitable[Response]] | None = None,
    output: OutputTool | None = None,
    replayed: bool = False,
) -> Response:
    """Stream one step (its model calls, tool calls and retries) to *consumers*; return its Response.

    Every consumer sees ``StepStarted``, the calls' deltas, ``ToolUse``,
    ``Message`` and ``ToolResult`` events, a ``Retrying`` before each new
    attempt, and exactly one terminal event last (``Done``, ``Failed`` or
    ``Cancelled``); docs/engine.md has the details.

    Args:
        run: The run's id, clock origin and event stream (which gets every event).
        path: The step path (``draft``, ``batch[3]``, ``par.branch_a``).
        provider: Streams each model call; not closed here (the run owns it).
        request: The first call's request.
        consumers: Handlers (each fed by its own actor) and channels the caller reads.
        step_type: Reported in ``StepStarted``.
        tool_runner: Runs the model's tool calls; without it a ``tool_use`` stop ends the step.
        max_turns: The most model calls (``Response.status="max_turns"`` past it); a
            retried call counts once.
        retry: ``decide(error, attempt) -> delay | None``, optionally ``model_for``
            (``RetryPolicy``); ``None``: never retry. A retry repeats only the
            failed model call; the calls and tool runs before it are kept.
        cost: ``cost(model, usage) -> USD | None``.
        on_handler_error: ``isolate`` (warn, drop the handler) or ``fail`` (fail the step).
        handler_timeout: Seconds one ``handle`` / ``handle_batch`` call may take before it
            counts as that handler's failure under *on_handler_error*; ``None``: no bound.
        finish: Runs on the final response before ``Done``; what it raises fails the step.
        output: Tool-based structured output: the request offers its tool; its input
            streams as ``PartialOutput`` events and, validated, is ``Response.output``
            (a final value that fails validation fails the step, unless ``output.retries``).
        replayed: Mark ``StepStarted`` and ``Done`` as replayed: *provider* streams a response
            an earlier run saved, which this run does not pay for (``--resume``).

    Returns:
        The step's ``Response`` (also sent in ``Done``): every kept call, none of
        the failed calls a retry superseded.

    Raises:
        ProviderError: the provider failed (after retries), after ``Failed``.
        HandlerError: a handler failed under ``fail``.
        Exception: any other error of a call, a tool or *finish*, after ``Failed``.
        Every error raised, and a cancellation, carries the partial response as ``exc.partial``.

    Blocks while a ``block`` consumer is full (that is the backpressure). Closes
    every channel it was given or made, and every handler (``aclose`` once,
    shielded, bounded), on success, error and cancellation alike. Cancelled:
    events in flight may be dropped, but every consumer still gets exactly one
    terminal event, shielded and bounded; then the cancellation propagates.
    """
    wiring = await wire_consumers(consumers, run)
    tee = Tee([*wiring.outlets, *([wiring.run_outlet] if wiring.run_outlet is not None else [])])
    state = _StepRun(run, path, tee, cost)
    if output is not None:
        state.output_stream = OutputStream(output, state.emit)
    delivery = Delivery(wiring, tee, on_handler_error, handler_timeout)

    async def produce() -> Event:
        response: Response | None = None
        try:
            with delivery.produce_scope:
                await state.emit(
                    StepStarted, provider=provider.name, model=request.model, step_type=step_type, replayed=replayed
                )
                response = await _turns(state, provider, request, tool_runner, max(max_turns, 1), retry, output)
                if finish is not None:
                    response = await finish(response)
            if delivery.handler_failure is not None:
                raise delivery.handler_failure
            assert response is not None  # the scope is cancelled only by a handler failure
            return Done(**state.envelope(), response=response, replayed=replayed)
        except Exception as exc:
            failed = Failed(**state.envelope(), error=exc, message=str(exc), partial=state.response())
            attach_partial(exc, failed.partial)
            return failed

    async def cancelled() -> Event:
        return Cancelled(**state.envelope(), partial=state.response())

    try:
        terminal = await delivery.run(produce, cancelled)
    except BaseException as exc:  # a cancellation arrives here as a group (the actors' and ours)
        partial = terminal_response(delivery.terminal) if delivery.terminal is not None else state.response()
        attach_partial(exc, partial)
        raise
    if isinstance(terminal, Failed):
        raise terminal.error
    if delivery.handler_failure is not None:  # a handler failed on Done or in aclose: the response is kept
        attach_partial(delivery.handler_failure, terminal_response(terminal))
        raise delivery.handler_failure
    assert isinstance(terminal, Done)
    return terminal.response
