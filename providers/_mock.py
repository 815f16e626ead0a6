"""The embedded mock provider: deterministic, scripted, paced on trio's clock.

It needs no key and no network, and it speaks the same provider events as the
live provider, so every part of the engine can be exercised in virtual time.

The script comes from ``request.mock`` (a ``MockSpec``, read duck-typed; a plain
mapping with the same keys works too). When there is none, or it scripts no
``response`` and no ``turns``, the text is derived from the prompt: a stable
sentence seeded by a hash of the prompt, so the same prompt always gets the
same answer.

Turns (``request.turn`` selects one):

- ``turns``: turn *i* streams ``turns[i]`` (thinking, text, tool calls). A turn
  with tool calls stops with ``tool_use``, else ``end_turn``. A turn past the
  end of the script streams a derived final answer (``end_turn``).
- single-turn spec with ``tool_calls``: turn 0 streams the thinking, a short
  preamble ("Let me use the Read tool.") and the tool calls (``tool_use``);
  every later turn streams ``response`` (``end_turn``).
- single-turn spec without tool calls: every turn streams thinking and
  ``response`` (``end_turn``).

Block order in a call: thinking, text, then one ``tool_use`` block per call
with id ``toolu_mock_<turn>_<i>``; its JSON input arrives in
``InputJsonChunk`` pieces of ``ceil(len/4)`` characters (at most 64), or of
``chunk_size`` characters when set.

Pacing. Every *delta* (text, thinking or tool-input chunk) may be preceded by a
``trio.sleep``; block and message events are never delayed. The first delta of
each call waits the first-token delay.

=============  ===============  =============================  ======================
pattern        first token      between deltas                 delta size
=============  ===============  =============================  ======================
``fast``       0                0 (a checkpoint every 64       1 word
                                events, so cancellation works)
``slow``       300 ms           150 ms                         1 word
``chunked``    200 ms           bursts of 5 deltas with no     1 word
                                delay, 250 ms between bursts
``realistic``  400 ms           15-40 ms, pseudo-random        1-4 words,
                                                               pseudo-random
=============  ===============  =============================  ======================

"Word" means a run of non-space characters with the whitespace after it, so
deltas concatenate exactly to the text. Realistic jitter and chunk sizes are
seeded from the call's content, so they are the same on every run.
``first_token_delay_ms`` overrides the first-token delay, ``delay_ms`` the
delay between deltas (for ``chunked``: the pause between bursts; for
``realistic``: a fixed delay without jitter), and ``chunk_size`` splits text
into that many characters instead of words. ``MockProvider(clock_scale=...)``
multiplies every delay (0 disables sleeping; checkpoints remain).

Injected errors. ``error`` (``overloaded``, ``rate_limit``,
``connection_lost``, ``timeout``, ``server_error``) is raised after
``error_after`` deltas (default 0: from ``__aenter__``, before any event), or
after the last delta when the call has fewer; the classes are
``OverloadedError``, ``RateLimitedError``, ``StreamInterruptedError``,
``ProviderTimeoutError`` and ``ProviderError``, each with ``step=request.step``
and, for the first two, ``retry_after`` from the spec. A ``timeout`` first
waits ``request.first_token_timeout`` (before output) or
``request.idle_timeout`` (mid-stream) when set. ``error_attempts: N`` makes only
attempts 1..N fail (``request.attempt``); by default every attempt fails. The
error applies to every turn of a failing attempt, or with ``error_turn: T``
only to turn *T* (``request.turn``): a tool loop whose later call fails.

Usage. ``MessageStart`` reports ``input_tokens`` = prompt characters / 4 (system,
messages and tool definitions; at least 1) and ``output_tokens`` = 1;
``MessageDeltaInfo`` reports the cumulative ``output_tokens`` = characters of
text, thinking and tool input / 4 (at least 1).

Events are generated lazily: a stream of a million deltas never holds more
than one at a time.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal

import attrs
import trio

from .._errors import (
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    StreamInterruptedError,
)
from ..engine import ModelRequest, Usage
from ..engine._provider_events import (
    BlockStart,
    BlockStop,
    InputJsonChunk,
    MessageDeltaInfo,
    MessageStart,
    MessageStop,
    ProviderEvent,
    TextChunk,
    ThinkingChunk,
)

__all__ = ("MockProvider",)

#: Events delivered between forced checkpoints when no delay applies.
CHECKPOINT_EVERY: Final = 64

#: Per pattern: (first-token delay, delay between deltas), in seconds.
PATTERN_DELAYS: Final[Mapping[str, tuple[float, float]]] = {
    "fast": (0.0, 0.0),
    "slow": (0.300, 0.150),
    "chunked": (0.200, 0.250),
    "realistic": (0.400, 0.0),  # between deltas: jitter, see REALISTIC_JITTER
}
#: ``chunked``: deltas per burst.
CHUNKED_BURST: Final = 5
#: ``realistic``: (min, max) seconds between deltas.
REALISTIC_JITTER: Final = (0.015, 0.040)
#: ``realistic``: (min, max) words per delta.
REALISTIC_WORDS: Final = (1, 4)
#: Tool-input JSON pieces: at most this many characters each.
JSON_PIECE_MAX: Final = 64
#: Characters of the last user message quoted by a derived response.
DERIVED_QUOTE_CHARS: Final = 60

#: Characters of each content part that seed the realistic jitter.
FINGERPRINT_CHARS: Final = 4096

_ERRORS: Final[Mapping[str, type[ProviderError]]] = {
    "overloaded": OverloadedError,
    "rate_limit": RateLimitedError,
    "connection_lost": StreamInterruptedError,
    "timeout": ProviderTimeoutError,
    "server_error": ProviderError,
}
_ERROR_MESSAGES: Final[Mapping[str, str]] = {
    "overloaded": "overloaded_error: Overloaded (injected by the mock)",
    "rate_limit": "rate_limit_error: rate limited (injected by the mock)",
    "connection_lost": "connection lost mid-stream (injected by the mock)",
    "timeout": "timed out waiting for the model (injected by the mock)",
    "server_error": "api_error: internal server error (injected by the mock)",
}

_WORD: Final = re.compile(r"\S+\s*|\s+")

_VOCABULARY: Final = (
    "the stream carries each token as it arrives and the handlers see every delta in order "
    "while the pipeline keeps memory bounded under backpressure so nothing is lost or "
    "duplicated when a step retries or the user cancels the run midway through a long answer "
    "about code tests design channels nurseries buffers latency throughput cost usage"
).split()


def _get(spec: Any, name: str) -> Any:
    """Read *name* from a spec object or mapping; ``None`` when absent."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return spec.get(name)
    return getattr(spec, name, None)


def _content_text(content: Any) -> str:
    """The text of a Messages API ``content`` (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, (list, tuple)):
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping):
                if isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif "content" in block:
                    parts.append(_content_text(block["content"]))
                elif "input" in block:
                    parts.append(json.dumps(block["input"], sort_keys=True))
    return "\n".join(parts)


def _asks(content: Any) -> bool:
    """Whether a user ``content`` is a question (text), not only tool results."""
    if isinstance(content, str):
        return True
    return any(
        isinstance(block, str) or (isinstance(block, Mapping) and block.get("type") == "text")
        for block in content or ()
    )


def _prompt_chars(request: ModelRequest) -> int:
    chars = len(request.system or "")
    for message in request.messages:
        chars += len(_content_text(message.get("content", "")))
    for tool in request.tools:
        chars += len(json.dumps(tool, sort_keys=True, default=str))
    return chars


def derive_response(request: ModelRequest) -> str:
    """Return the deterministic mock answer to *request*'s last user question.

    The question is the last user message with text (tool-result-only messages of a
    tool-use loop are skipped). The same question and system prompt always give
    the same text.
    """
    last_user = ""
    for message in reversed(request.messages):
        if message.get("role") == "user" and _asks(message.get("content", "")):
            last_user = _content_text(message.get("content", ""))
            break
    quote = " ".join(last_user.split())[:DERIVED_QUOTE_CHARS]
    seed = hashlib.sha256(f"{request.system or ''}\0{last_user}".encode()).digest()
    rng = random.Random(seed)
    words = [rng.choice(_VOCABULARY) for _ in range(rng.randint(8, 14))]
    sentence = " ".join(words).capitalize() + "."
    return f"Mock response to: {quote}\n\n{sentence}" if quote else f"Mock response. {sentence}"


class _Turn:
    """What one call streams: thinking, text, tool calls."""

    __slots__ = ("text", "thinking", "tool_calls")

    def __init__(self, text: str, thinking: str | None, tool_calls: list[tuple[str, str]]) -> None:
        self.text = text
        self.thinking = thinking
        self.tool_calls = tool_calls
        """(name, JSON input) pairs."""

    def fingerprint(self) -> str:
        """A short stable summary of the content, to seed jitter without copying huge texts."""
        head = FINGERPRINT_CHARS
        return (
            f"{len(self.text)}:{self.text[:head]}\0{(self.thinking or '')[:head]}"
            f"\0{[(name, payload[:head]) for name, payload in self.tool_calls]!r}"
        )


def _tool_calls(calls: Any) -> list[tuple[str, str]]:
    out = []
    for call in calls or ():
        tool_input = _get(call, "input") or {}
        out.append((str(_get(call, "name")), json.dumps(tool_input, sort_keys=True)))
    return out


def _select_turn(request: ModelRequest) -> _Turn:
    spec = request.mock
    turns = _get(spec, "turns") or ()
    if turns:
        if request.turn < len(turns):
            turn = turns[request.turn]
            return _Turn(
                _get(turn, "text") or "",
                _get(turn, "thinking"),
                _tool_calls(_get(turn, "tool_calls")),
            )
        return _Turn(derive_response(request), None, [])
    response = _get(spec, "response")
    if response is None:
        response = derive_response(request)
    thinking = _get(spec, "thinking")
    calls = _tool_calls(_get(spec, "tool_calls"))
    if calls and request.turn == 0:
        names = sorted({name for name, _ in calls})
        tools = " and ".join(names)
        preamble = f"Let me use the {tools} tool{'s' if len(names) > 1 else ''}."
        return _Turn(preamble, thinking, calls)
    if calls:
        return _Turn(response, None, [])
    return _Turn(response, thinking, [])


class _Pacer:
    """Splits text into deltas and says how long to wait before each delta."""

    def __init__(self, spec: Any, seed_text: str, scale: float) -> None:
        pattern = _get(spec, "pattern") or "fast"
        if pattern not in PATTERN_DELAYS:
            raise ValueError(f"unknown mock pattern {pattern!r}")
        self.pattern = pattern
        first, between = PATTERN_DELAYS[pattern]
        first_ms = _get(spec, "first_token_delay_ms")
        delay_ms = _get(spec, "delay_ms")
        self.first = (first if first_ms is None else first_ms / 1000) * scale
        self.between = (between if delay_ms is None else delay_ms / 1000) * scale
        self.jitter = pattern == "realistic" and delay_ms is None
        self.scale = scale
        self.chunk_size: int | None = _get(spec, "chunk_size")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"mock chunk_size must be at least 1, got {self.chunk_size}")
        self.rng = random.Random(hashlib.sha256(seed_text.encode()).digest())
        self.count = 0
        """Deltas paced so far in this call."""

    def delay(self) -> float:
        """Return the wait before the next delta (and count it)."""
        index = self.count
        self.count += 1
        if index == 0:
            return self.first
        if self.jitter:
            return self.rng.uniform(*REALISTIC_JITTER) * self.scale
        if self.pattern == "chunked":
            return self.between if index % CHUNKED_BURST == 0 else 0.0
        return self.between

    def split_text(self, text: str) -> Iterator[str]:
        """Yield *text* in deltas, lazily; they concatenate to *text*."""
        if self.chunk_size is not None:
            for start in range(0, len(text), self.chunk_size):
                yield text[start : start + self.chunk_size]
            return
        words = (m.group() for m in _WORD.finditer(text))
        if self.pattern != "realistic":
            yield from words
            return
        low, high = REALISTIC_WORDS
        group: list[str] = []
        want = self.rng.randint(low, high)
        for word in words:
            group.append(word)
            if len(group) >= want:
                yield "".join(group)
                group = []
                want = self.rng.randint(low, high)
        if group:
            yield "".join(group)

    def split_json(self, text: str) -> Iterator[str]:
        size = self.chunk_size or min(JSON_PIECE_MAX, max(1, math.ceil(len(text) / 4)))
        for start in range(0, len(text), size):
            yield text[start : start + size]


class _Sleep:
    """A plan step: wait this many seconds (0: just a checkpoint)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class _MockStream:
    """One mock call: an async context manager that is its own event iterator."""

    def __init__(self, provider: MockProvider, request: ModelRequest) -> None:
        self._provider = provider
        self._request = request
        self._plan: Iterator[ProviderEvent | _Sleep | ProviderError] | None = None
        self._closed = False
        self._since_checkpoint = 0

    async def __aenter__(self) -> _MockStream:
        await trio.lowlevel.checkpoint()
        if self._provider._closed:
            raise trio.ClosedResourceError("the mock provider is closed")
        request = self._request
        spec = request.mock
        turn = _select_turn(request)
        seed = turn.fingerprint()
        pacer = _Pacer(spec, seed, self._provider.clock_scale)
        error = self._error()
        self._plan = self._generate(request, turn, pacer, error)
        if error is not None and error[0] == 0:
            # An error "before any output" is an HTTP error status: raised on open.
            await self._run_to_error()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        self._closed = True
        if self._plan is not None:
            self._plan.close()  # type: ignore[attr-defined]  # an async generator: close() exists
            self._plan = None

    def __aiter__(self) -> _MockStream:
        return self

    async def __anext__(self) -> ProviderEvent:
        if self._closed:
            raise trio.ClosedResourceError("the mock stream is closed")
        plan = self._plan
        assert plan is not None, "use the stream inside `async with provider.stream(...)`"
        for item in plan:
            if isinstance(item, _Sleep):
                self._since_checkpoint = 0
                if item.seconds > 0:
                    await trio.sleep(item.seconds)
                else:
                    await trio.lowlevel.checkpoint()
                continue
            if isinstance(item, ProviderError):
                self._close()
                raise item
            self._since_checkpoint += 1
            if self._since_checkpoint >= CHECKPOINT_EVERY:
                self._since_checkpoint = 0
                await trio.lowlevel.checkpoint()
            return item
        await trio.lowlevel.checkpoint()
        raise StopAsyncIteration

    async def _run_to_error(self) -> None:
        """Consume the plan up to its error (only sleeps come first) and raise it."""
        try:
            item = await self.__anext__()
        except StopAsyncIteration:  # pragma: no cover - the plan always has the error
            return
        raise AssertionError(f"mock plan yielded {item!r} before an error at 0 deltas")

    def _error(self) -> tuple[int, ProviderError] | None:
        """Return (deltas before the error, the error) when this call must fail."""
        spec = self._request.mock
        kind = _get(spec, "error")
        if kind is None:
            return None
        if kind not in _ERRORS:
            raise ValueError(f"unknown mock error {kind!r}")
        attempts = _get(spec, "error_attempts")
        if attempts is not None and self._request.attempt > attempts:
            return None
        turn = _get(spec, "error_turn")
        if turn is not None and self._request.turn != turn:
            return None
        after = _get(spec, "error_after") or 0
        retry_after = _get(spec, "retry_after") if kind in ("overloaded", "rate_limit") else None
        error = _ERRORS[kind](
            _ERROR_MESSAGES[kind], step=self._request.step, retry_after=retry_after
        )
        return after, error

    def _generate(
        self,
        request: ModelRequest,
        turn: _Turn,
        pacer: _Pacer,
        error: tuple[int, ProviderError] | None,
    ) -> Iterator[ProviderEvent | _Sleep | ProviderError]:
        """Yield the call's events, sleeps and error, lazily."""
        error_after = error[0] if error is not None else -1
        scale = self._provider.clock_scale

        def fail() -> Iterator[_Sleep | ProviderError]:
            assert error is not None
            timeout = request.first_token_timeout if pacer.count == 0 else request.idle_timeout
            if isinstance(error[1], ProviderTimeoutError) and timeout:
                yield _Sleep(timeout * scale)
            yield error[1]

        if error_after == 0:
            yield from fail()
            return
        model = _get(request.mock, "model") or request.model
        digest = hashlib.sha256(f"{request.step}\0{turn.fingerprint()}".encode()).hexdigest()[:12]
        yield MessageStart(
            model=model,
            usage=Usage(input_tokens=max(1, _prompt_chars(request) // 4), output_tokens=1),
            message_id=f"msg_mock_{digest}_{request.turn}",
        )
        out_chars = 0
        index = 0
        blocks: list[tuple[Literal["text", "thinking", "tool_use"], str | None, str | None, str]] = []
        if turn.thinking:
            blocks.append(("thinking", None, None, turn.thinking))
        if turn.text or not (turn.thinking or turn.tool_calls):
            blocks.append(("text", None, None, turn.text))
        for i, (tool_name, payload) in enumerate(turn.tool_calls):
            blocks.append(("tool_use", f"toolu_mock_{request.turn}_{i}", tool_name, payload))
        for kind, tool_use_id, name, content in blocks:
            yield BlockStart(index, kind, tool_use_id=tool_use_id, name=name)
            pieces = pacer.split_json(content) if kind == "tool_use" else pacer.split_text(content)
            for piece in pieces:
                delay = pacer.delay()
                if delay > 0:
                    yield _Sleep(delay)
                if kind == "text":
                    yield TextChunk(index, piece)
                elif kind == "thinking":
                    yield ThinkingChunk(index, piece)
                else:
                    yield InputJsonChunk(index, piece)
                out_chars += len(piece)
                if pacer.count == error_after:
                    yield from fail()
                    return
            yield BlockStop(index)
            index += 1
        if error_after > 0:
            yield from fail()
            return
        yield MessageDeltaInfo(
            stop_reason="tool_use" if turn.tool_calls else "end_turn",
            usage=Usage(output_tokens=max(1, out_chars // 4)),
        )
        yield MessageStop()


class MockProvider:
    """The embedded mock model: deterministic, scripted, paced on trio's clock.

    See the module docstring for the script, the pacing numbers and the
    injected errors.

    Args:
        default_model: The model reported when neither the spec nor the request names one.
        clock_scale: Multiplies every delay (0 disables sleeping).
    """

    name = "mock"

    def __init__(self, *, default_model: str = "claude-mock-1", clock_scale: float = 1.0) -> None:
        if clock_scale < 0:
            raise ValueError(f"clock_scale must be >= 0, got {clock_scale}")
        self.default_model = default_model
        self.clock_scale = clock_scale
        self._closed = False

    def stream(self, request: ModelRequest) -> _MockStream:
        """Open one scripted call; use as ``async with provider.stream(request) as events``.

        Entering checkpoints, and raises the injected error when it comes before
        any output. Iterating sleeps on trio's clock as the pattern says, and
        raises the injected ``ProviderError`` at its point. Leaving the block
        closes the call at once; cancellation interrupts any sleep. Nothing here
        blocks for backpressure: the consumer pulls.
        """
        if not request.model:
            request = _with_model(request, self.default_model)
        return _MockStream(self, request)

    async def aclose(self) -> None:
        """Close the provider (idempotent); later ``stream`` calls raise ``ClosedResourceError``."""
        self._closed = True
        await trio.lowlevel.checkpoint()


def _with_model(request: ModelRequest, model: str) -> ModelRequest:
    return attrs.evolve(request, model=model)
