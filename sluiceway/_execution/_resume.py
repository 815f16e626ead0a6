"""Saved responses, and runs that resume instead of paying twice (``--resume RUN_DIR``).

Every run saves each finished model call's response in its own folder as it
finishes, atomically (a temporary file in the same folder, then
``os.replace``), so that a crash at any moment leaves either the whole file or
none:

- ``<run_dir>/batch/<STEP>/<i>.json``: task *i* of the ``claude_batch`` step STEP;
- ``<run_dir>/steps/<STEP>.json``: a ``claude``, ``claude_smart`` or ``llm`` step.

Each file holds the response and the *input hash* of what determined the call
(``input_hash``): the rendered prompt, the model, the system prompt, the
sampling options, the tools offered, the turn limit and the provider (the
``mock`` block too, in mock mode). A run that resumes another
(``resume=RUN_DIR``) is a new run, in a new folder: a task or step whose saved
response has the same input hash is not called again. Its events are replayed
from the saved response (``StepStarted`` and ``Done`` carry ``replayed=True``)
and the file is copied into the new run's folder, so that the new folder holds
every response and can itself be resumed. A file that cannot be read or parsed
is not trusted: the task runs again, with a ``ResumeWarning`` naming the file.

The interface the step types use is small: ``ResumeState.store(step)`` gives a
step's ``SavedResponses`` (``_saved``: ``saved(key, input_hash)``, ``save(key,
input_hash, response)``); ``plan_calls`` renders a batch's prompts, hashes
them and finds their saved responses (which tasks still need a call);
``replay_call`` streams a saved response to a sub-step's consumers; a task
called is saved with ``store.save`` once it is done. ``resumable_model_call``
does all of it for a whole step.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from .._errors import SluicewayError
from ..engine import (
    BlockStart,
    BlockStop,
    InputJsonChunk,
    Message,
    MessageDeltaInfo,
    MessageStart,
    MessageStop,
    ModelRequest,
    Provider,
    ProviderEvent,
    Response,
    TextBlock,
    TextChunk,
    ThinkingBlock,
    ThinkingChunk,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
    stream_step,
)
from ..specs import Pipeline
from ._model_call import (
    build_request,
    handler_error_policy,
    handler_timeout,
    step_options,
    stream_model_call,
)
from ._prompts import render_prompt
from ._saved import SAVED_FORMAT, ResumeState, SavedResponses, write_atomic
from ._state import ExecutionState

__all__ = (
    "RUN_MARKER",
    "PlannedCall",
    "ResumeError",
    "ResumeState",
    "call_basis",
    "call_input_hash",
    "check_run_dir",
    "plan_call",
    "plan_calls",
    "replay_call",
    "replay_response",
    "resumable_model_call",
    "write_run_marker",
)

#: The marker a run writes into its folder at its start: what ``--resume`` checks first.
RUN_MARKER: Final = "run.json"


class ResumeError(SluicewayError, ValueError):
    """``resume=RUN_DIR`` names no run folder, or one a different pipeline made."""


def check_run_dir(spec: Pipeline, run_dir: str | os.PathLike[str]) -> Path:
    """The run folder *run_dir*, checked: made by a run of *spec*'s pipeline.

    A run folder holds ``run.json`` (written when a run starts) or ``result.json``
    (written when it ends); its pipeline name must be *spec*'s.

    Raises:
        ResumeError: no such folder, no run's files in it, or another pipeline's run.
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise ResumeError(f"--resume {str(folder)!r}: no such folder")
    pipeline = None
    for name in (RUN_MARKER, "result.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ResumeError(f"--resume {str(folder)!r}: {name} cannot be read: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("pipeline"), str):
            pipeline = data["pipeline"]
            break
    if pipeline is None:
        raise ResumeError(
            f"--resume {str(folder)!r} is not a run folder (it has neither {RUN_MARKER} nor result.json); "
            "give the folder of one run, such as outputs/run_20250101-120000_abc123"
        )
    if pipeline != spec.name:
        raise ResumeError(
            f"--resume {str(folder)!r} is a run of pipeline {pipeline!r}, not of {spec.name!r} "
            f"({spec.source or 'the spec'})"
        )
    return folder.resolve()


def write_run_marker(state: ExecutionState) -> None:
    """Write ``run.json`` (run id, pipeline, spec file, the run it resumes) at the run's start."""
    marker = {
        "sluiceway_run": 1,
        "run_id": state.run_id,
        "pipeline": state.spec.name,
        "spec": state.spec.source,
        "resumed_from": None if state.resume.previous is None else str(state.resume.previous),
    }
    write_atomic(state.run_dir / RUN_MARKER, json.dumps(marker, indent=2))


def call_input_hash(state: ExecutionState, step: Any, text: str, provider: Provider) -> str:
    """The hash of what determines a model call of *step* with the rendered prompt *text*.

    The request (model, system prompt, messages, output cap, temperature), the
    fallback model, the tools offered (built-ins, function tools, MCP servers,
    the permission hook, the working folder), the turn limit and the provider's
    name; in mock mode the step's ``mock`` block. Not the timeouts: a resumed
    run may give slow calls more time and still reuse the finished ones.
    """
    return _input_hash(call_basis(state, step, provider), text)


def call_basis(state: ExecutionState, step: Any, provider: Provider) -> str:
    """What determines *step*'s calls besides the prompt, as canonical JSON (``call_input_hash``)."""
    opts = step_options(state, step)
    request = build_request(state, step, "", options=opts)
    mock = request.mock if provider.name == "mock" else None
    basis = {
        "format": SAVED_FORMAT,
        "provider": provider.name,
        "model": request.model,
        "fallback_model": opts.fallback_model,
        "system": request.system,
        "history": list(request.messages[:-1]),
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "max_turns": opts.max_turns,
        "allowed_tools": opts.allowed_tools,
        "disallowed_tools": opts.disallowed_tools,
        "tools": opts.tools,
        "run_tools": sorted(getattr(t, "__name__", repr(t)) for t in state.options.tools),
        "mcp_servers": None if opts.mcp_servers is None else {k: attrs.asdict(v) for k, v in opts.mcp_servers.items()},
        "can_use_tool": opts.can_use_tool,
        "cwd": opts.cwd,
        "mock": None if mock is None else (attrs.asdict(mock) if attrs.has(type(mock)) else mock),
    }
    return json.dumps(basis, sort_keys=True, default=repr, ensure_ascii=False)


def _input_hash(basis: str, text: str) -> str:
    digest = hashlib.sha256(basis.encode("utf-8"))
    digest.update(b"\0")
    digest.update(text.encode("utf-8"))  # the prompt: the user message the call sends
    return "sha256:" + digest.hexdigest()


class _SavedCalls:
    """A provider that answers call *n* (``request.turn``) with the *n*-th saved assistant message."""

    def __init__(self, name: str, messages: Sequence[Message]) -> None:
        self.name = name
        self._messages = messages

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ProviderEvent]]:
        await trio.lowlevel.checkpoint()  # a long replay stays cancellable: one checkpoint per call
        yield _Events(_provider_events(self._messages[request.turn], request.model))

    async def aclose(self) -> None:
        pass


class _Events:
    """An async iterator over provider events already made (nothing to close)."""

    def __init__(self, events: list[ProviderEvent]) -> None:
        self._events = iter(events)

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> ProviderEvent:
        try:
            return next(self._events)
        except StopIteration:
            raise StopAsyncIteration from None


def _provider_events(message: Message, model: str) -> list[ProviderEvent]:
    """The events of a call that answers *message*: each block whole, in one chunk."""
    events: list[ProviderEvent] = [MessageStart(model=model, usage=message.usage or Usage())]
    for index, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            events += [BlockStart(index, "text"), TextChunk(index, block.text)]
        elif isinstance(block, ThinkingBlock):
            events += [BlockStart(index, "thinking"), ThinkingChunk(index, block.thinking)]
            if block.signature is not None:
                events.append(ThinkingChunk(index, "", signature=block.signature))
        elif isinstance(block, ToolUseBlock):
            events += [
                BlockStart(index, "tool_use", tool_use_id=block.id, name=block.name),
                InputJsonChunk(index, json.dumps(block.input)),
            ]
        else:
            continue
        events.append(BlockStop(index))
    events += [MessageDeltaInfo(stop_reason=message.stop_reason), MessageStop()]
    return events


class _SavedToolResults:
    """A tool runner that answers each tool call with the saved result: no tool runs again."""

    def __init__(self, messages: Sequence[Message]) -> None:
        self._results = [
            b for m in messages if m.role == "user" for b in m.content if isinstance(b, ToolResultBlock)
        ]
        self._next = 0

    def definitions(self) -> tuple[dict[str, Any], ...]:
        return ()

    async def run(self, name: str, input: Mapping[str, Any]) -> tuple[str, bool]:
        await trio.lowlevel.checkpoint()
        result = self._results[self._next]
        self._next += 1
        return result.content, result.is_error


async def replay_response(
    state: ExecutionState,
    step: Any,
    consumers: Sequence[Any],
    saved: Response,
    *,
    path: str,
    text: str,
    provider: str,
) -> Response:
    """Stream *saved* to *consumers* as sub-step (or step) *path*, marked replayed; return it.

    The events are those a call gives (``StepStarted`` ... ``Done``, each
    message's text as one ``Delta``, its ``ToolUse`` and ``ToolResult``
    events), through ``stream_step``: the same envelope, backpressure,
    cancellation and terminal guarantees as a call. No model is called and no
    tool runs. The response returned is *saved*, with this run's messages and
    metrics.
    """
    calls = [m for m in saved.messages if m.role == "assistant"]
    if not calls:
        raise ValueError("a saved response with no assistant message")
    opts = step_options(state, step)
    request = build_request(state, step, text, path=path, options=opts)
    tools = _SavedToolResults(saved.messages) if any(m.role == "user" for m in saved.messages) else None

    async def finish(replayed: Response) -> Response:
        return attrs.evolve(
            replayed, cost_usd=saved.cost_usd, status=saved.status, output=saved.output, model=saved.model,
            superseded_usage=saved.superseded_usage, superseded_cost_usd=saved.superseded_cost_usd,
        )

    return await stream_step(
        run=state.run_context,
        path=path,
        provider=_SavedCalls(provider or state.provider.name, calls),
        request=request,
        consumers=consumers,
        step_type=step.type,
        tool_runner=tools,
        max_turns=len(calls),
        on_handler_error=handler_error_policy(state, step),
        handler_timeout=handler_timeout(state, step),
        finish=finish,
        replayed=True,
    )


@attrs.frozen
class PlannedCall:
    """A model call about to be made, or replayed: its rendered prompt, input hash and saved response."""

    key: int | str
    """The call's key in its step's store: a task's index, or the step's name."""
    text: str
    """The rendered prompt."""
    input_hash: str
    """``call_input_hash`` of the call."""
    provider: str
    """The provider's name."""
    saved: Response | None
    """The response the resumed run saved for it (same input hash), or ``None``: it must be called."""


async def plan_call(
    state: ExecutionState,
    step: Any,
    provider: Provider,
    store: SavedResponses,
    key: int | str,
    *,
    prompt: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> PlannedCall:
    """Render the call's prompt, hash its inputs, and look for its saved response.

    Raises:
        StepError: the prompt cannot be rendered.
    """
    text = await render_prompt(state, step, prompt, extra)
    input_hash = call_input_hash(state, step, text, provider)
    saved = store.saved(key, input_hash)
    return PlannedCall(key=key, text=text, input_hash=input_hash, provider=provider.name, saved=saved)


async def plan_calls(
    state: ExecutionState,
    step: Any,
    provider: Provider,
    store: SavedResponses,
    prompts: Sequence[tuple[Any, Mapping[str, Any] | None]],
) -> list[PlannedCall | Exception]:
    """``plan_call`` for each ``(prompt, extra)`` of a batch, keyed by index, the files read in one go.

    A prompt that cannot be rendered gives its error in its place (it fails that task alone).
    """
    planned: list[tuple[str, str] | Exception] = []
    basis = call_basis(state, step, provider)  # the same for every task: only the prompts differ
    for prompt, extra in prompts:
        try:
            text = await render_prompt(state, step, prompt, extra)
            planned.append((text, _input_hash(basis, text)))
        except Exception as exc:
            planned.append(exc)
    wanted = [(i, p[1]) for i, p in enumerate(planned) if not isinstance(p, Exception)]
    found = dict(zip((i for i, _ in wanted), store.saved_many(wanted), strict=True))
    return [
        p if isinstance(p, Exception)
        else PlannedCall(key=i, text=p[0], input_hash=p[1], provider=provider.name, saved=found[i])
        for i, p in enumerate(planned)
    ]


async def replay_call(
    state: ExecutionState, step: Any, consumers: Sequence[Any], store: SavedResponses, call: PlannedCall,
    *, path: str,
) -> Response:
    """Replay *call*'s saved response (``replay_response``), copy it into this run's store, count it reused."""
    assert call.saved is not None
    response = await replay_response(
        state, step, consumers, call.saved, path=path, text=call.text, provider=call.provider
    )
    state.resume.count_reused(step.name, call.saved)
    store.save(call.key, call.input_hash, call.saved, provider=call.provider)
    return response


async def resumable_model_call(
    state: ExecutionState, step: Any, consumers: Sequence[Any], provider: Provider
) -> Response:
    """A whole step's model call (``claude``, ``llm``...): replayed when the resumed run saved it, else
    ``stream_model_call``, its response saved once done (``steps/<STEP>.json``)."""
    store = state.resume.store(step.name, batch=False)
    call = await plan_call(state, step, provider, store, step.name)
    if call.saved is not None:
        return await replay_call(state, step, consumers, store, call, path=step.name)
    response = await stream_model_call(state, step, consumers, provider, rendered=call.text)
    store.save(call.key, call.input_hash, response, provider=call.provider)
    return response
