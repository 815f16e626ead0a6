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
step's ``SavedResponses`` (``saved(key, input_hash)``, ``save(key, input_hash,
response)``), ``call_input_hash`` hashes a call, and ``replay_response`` streams
a saved response to a (sub-)step's consumers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from .._errors import SluicewayError
from .._result import Reuse
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
from ._state import ExecutionState

__all__ = (
    "RUN_MARKER",
    "SAVED_FORMAT",
    "PlannedCall",
    "ResumeError",
    "ResumeState",
    "ResumeWarning",
    "SavedResponses",
    "call_basis",
    "call_input_hash",
    "check_run_dir",
    "plan_call",
    "plan_calls",
    "replay_call",
    "replay_response",
    "response_from_json",
    "response_to_json",
    "resumable_model_call",
    "write_run_marker",
)

#: The saved-response file format; a file of another format is not trusted.
SAVED_FORMAT: Final = 1
#: The marker a run writes into its folder at its start: what ``--resume`` checks first.
RUN_MARKER: Final = "run.json"


class ResumeError(SluicewayError, ValueError):
    """``resume=RUN_DIR`` names no run folder, or one a different pipeline made."""


class ResumeWarning(RuntimeWarning):
    """A saved response could not be trusted (unreadable, corrupt): its task runs again."""


# --------------------------------------------------------------------------- the run folder


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
    _write_atomic(state.run_dir / RUN_MARKER, json.dumps(marker, indent=2))


# --------------------------------------------------------------------------- the store


@attrs.define
class ResumeState:
    """A run's saved responses: where it saves them, the run it resumes, and what it reused."""

    run_dir: Path
    """This run's folder: responses are saved under it."""
    previous: Path | None = None
    """The folder of the run this one resumes (``resume=RUN_DIR``), or ``None``."""
    reuse: Reuse = attrs.field(factory=Reuse)
    """What this run took from *previous* instead of calling the model (``result.json``'s ``reused``)."""
    by_step: dict[str, int] = attrs.field(factory=dict)
    """Step name -> how many of its responses (tasks, or the step's one) were replayed."""

    def store(self, step: str, *, batch: bool) -> SavedResponses:
        """The saved responses of *step*: its tasks' (*batch*), or its own."""
        relative = Path("batch", _safe_name(step)) if batch else Path("steps")
        return SavedResponses(
            folder=self.run_dir / relative,
            previous=None if self.previous is None else self.previous / relative,
            step=step,
            resume=self,
        )

    def count_reused(self, step: str, response: Response) -> None:
        """Add a replayed response to the tallies."""
        reuse = self.reuse
        reuse.responses += 1
        reuse.requests += sum(1 for m in response.messages if m.role == "assistant")
        reuse.usage = reuse.usage + response.usage
        if reuse.cost_usd is not None:
            reuse.cost_usd = None if response.cost_usd is None else reuse.cost_usd + response.cost_usd
        self.by_step[step] = self.by_step.get(step, 0) + 1


@attrs.define
class SavedResponses:
    """One step's saved responses: ``<key>.json`` files, each with its input hash.

    *key* is a batch task's index, or the step's name for a whole step. Reads
    come from the resumed run's folder; writes go to this run's. Both are plain
    file operations on the calling thread, as ``result.json``'s write is: a
    file of a few kilobytes per finished call costs less than a hop to a worker
    thread (a batch of thousands of tasks would pay one per task), a write
    cannot be cancelled half way, and a run on a virtual clock does not see
    time jump while a thread works.
    """

    folder: Path
    """Where this run saves."""
    previous: Path | None
    """Where the run it resumes saved, or ``None``."""
    step: str
    """The step's name (in warnings)."""
    resume: ResumeState | None = None
    """The run's tallies (a replay is counted there)."""
    _made: bool = attrs.field(default=False, init=False, repr=False)
    """Whether *folder* was made (by the first save)."""

    def path(self, key: int | str) -> Path:
        """The file of *key* in this run's folder."""
        return self.folder / f"{_safe_name(str(key))}.json"

    def saved(self, key: int | str, input_hash: str) -> Response | None:
        """The response the resumed run saved for *key*, when its input hash is *input_hash*.

        ``None`` when there is none, it was made from other inputs, or it cannot
        be trusted (unreadable, not JSON, another format: a ``ResumeWarning``
        names the file, and the task runs again).
        """
        (found,) = self.saved_many([(key, input_hash)])
        return found

    def saved_many(self, wanted: Sequence[tuple[int | str, str]]) -> list[Response | None]:
        """``saved`` for each ``(key, input_hash)`` of *wanted*."""
        if self.previous is None:
            return [None] * len(wanted)
        found = [_read_saved(self.previous / f"{_safe_name(str(key))}.json", h) for key, h in wanted]
        for item in found:
            if isinstance(item, str):
                warnings.warn(ResumeWarning(item), stacklevel=2)
        return [item if isinstance(item, Response) else None for item in found]

    def save(self, key: int | str, input_hash: str, response: Response, *, provider: str = "") -> None:
        """Save *response* for *key*, atomically; a response that cannot be saved is warned about.

        Not saving loses nothing of this run (the response is in its result);
        a later resume calls that task again. A plain write of a small file, on
        the calling thread: it cannot be cancelled half way (the call is paid for),
        and costs less than a hop to a worker thread would.
        """
        try:
            data = {
                "sluiceway_saved": SAVED_FORMAT,
                "step": self.step,
                "key": key,
                "input_hash": input_hash,
                "provider": provider,
                "response": response_to_json(response),
            }
            text = json.dumps(data, ensure_ascii=False)
        except (TypeError, ValueError) as exc:  # an output that is not JSON
            warnings.warn(ResumeWarning(f"step {self.step!r}: response {key} not saved: {exc}"), stacklevel=1)
            return
        path = self.path(key)
        try:
            if not self._made:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made = True
            _write_atomic(path, text)
        except OSError as exc:
            warnings.warn(ResumeWarning(f"step {self.step!r}: response {key} not saved: {exc}"), stacklevel=1)


def _read_saved(path: Path, input_hash: str) -> Response | str | None:
    """The saved response in *path* if its input hash is *input_hash*; ``None``; or why it is not trusted."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: cannot be read ({exc}); the call runs again"
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("sluiceway_saved") != SAVED_FORMAT:
            raise ValueError(f"not a saved response of format {SAVED_FORMAT}")
        if data.get("input_hash") != input_hash:
            return None  # made from other inputs (a prompt, model or option changed)
        return response_from_json(data["response"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"{path}: not a valid saved response ({exc}); the call runs again"


def _write_atomic(path: Path, text: str) -> None:
    """Write *text* to *path* whole or not at all: a temporary file beside it, then renamed over *path*.

    Whole or absent whatever moment the process dies. Not synced to the disk
    (a sync per task would slow a large batch): after a power loss a file may
    be incomplete, and ``_read_saved`` then refuses it.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\-\[\]]", "_", name) or "_"


# --------------------------------------------------------------------------- the input hash


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


# --------------------------------------------------------------------------- responses as JSON


def _block_to_json(block: Any) -> dict[str, Any]:
    out = attrs.asdict(block)
    out["type"] = block.type
    return out


_BLOCKS: Final[dict[str, type]] = {
    "text": TextBlock, "thinking": ThinkingBlock, "tool_use": ToolUseBlock, "tool_result": ToolResultBlock,
}


def _block_from_json(data: Mapping[str, Any]) -> Any:
    fields = dict(data)
    cls = _BLOCKS.get(fields.pop("type", None))
    if cls is None:
        raise ValueError(f"unknown content block type {data.get('type')!r}")
    return cls(**fields)


def response_to_json(response: Response) -> dict[str, Any]:
    """*response* as JSON-able data (``response_from_json`` reads it back); the metrics are not kept."""
    return {
        "text": response.text,
        "messages": [
            {
                "role": m.role,
                "content": [_block_to_json(b) for b in m.content],
                "usage": None if m.usage is None else attrs.asdict(m.usage),
                "stop_reason": m.stop_reason,
            }
            for m in response.messages
        ],
        "usage": attrs.asdict(response.usage),
        "cost_usd": response.cost_usd,
        "stop_reason": response.stop_reason,
        "model": response.model,
        "status": response.status,
        "output": response.output,
        "superseded_usage": attrs.asdict(response.superseded_usage),
        "superseded_cost_usd": response.superseded_cost_usd,
    }


def response_from_json(data: Mapping[str, Any]) -> Response:
    """The ``Response`` ``response_to_json`` wrote (its messages with an empty envelope).

    Raises:
        ValueError, KeyError, TypeError: *data* is not such a response.
    """
    messages = tuple(
        Message(
            run_id="", step="", role=m["role"], content=tuple(_block_from_json(b) for b in m["content"]),
            usage=None if m.get("usage") is None else Usage(**m["usage"]), stop_reason=m.get("stop_reason"),
        )
        for m in data["messages"]
    )
    text = data["text"]
    if not isinstance(text, str):
        raise TypeError("text is not a string")
    return Response(
        text=text,
        messages=messages,
        usage=Usage(**data["usage"]),
        cost_usd=data.get("cost_usd"),
        stop_reason=data.get("stop_reason"),
        model=data.get("model"),
        status=data.get("status", "ok"),
        output=data.get("output"),
        superseded_usage=Usage(**data.get("superseded_usage", {})),
        superseded_cost_usd=data.get("superseded_cost_usd", 0.0),
    )


# --------------------------------------------------------------------------- replay


class _SavedCalls:
    """A provider that answers call *n* (``request.turn``) with the *n*-th saved assistant message."""

    def __init__(self, name: str, messages: Sequence[Message]) -> None:
        self.name = name
        self._messages = messages

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ProviderEvent]]:
        async with aclosing(self._events(self._messages[request.turn], request.model)) as events:
            yield events

    async def _events(self, message: Message, model: str) -> AsyncIterator[ProviderEvent]:
        await trio.lowlevel.checkpoint()  # a long replay stays cancellable
        yield MessageStart(model=model, usage=message.usage or Usage())
        for index, block in enumerate(message.content):
            if isinstance(block, TextBlock):
                yield BlockStart(index, "text")
                yield TextChunk(index, block.text)
            elif isinstance(block, ThinkingBlock):
                yield BlockStart(index, "thinking")
                yield ThinkingChunk(index, block.thinking)
                if block.signature is not None:
                    yield ThinkingChunk(index, "", signature=block.signature)
            elif isinstance(block, ToolUseBlock):
                yield BlockStart(index, "tool_use", tool_use_id=block.id, name=block.name)
                yield InputJsonChunk(index, json.dumps(block.input))
            else:
                continue
            yield BlockStop(index)
        yield MessageDeltaInfo(stop_reason=message.stop_reason)
        yield MessageStop()

    async def aclose(self) -> None:
        pass


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
    if store.resume is not None:
        store.resume.count_reused(step.name, call.saved)
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
