"""Hypothesis strategies for valid enveloped event streams.

``event_streams()`` draws what a run's steps could emit: per step a
``StepStarted``, text/thinking/tool-use turns, failed calls superseded by
``Retrying`` (the next attempt repeats the failed call alone), and exactly one
terminal event, with the steps interleaved. Every stream it draws satisfies invariants 1-3 of DESIGN.md, so
``check_invariants`` accepts it; shrinking makes counterexamples short.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Sequence
from typing import Any, Final

import attrs
from hypothesis import strategies as st

from .._errors import OverloadedError, StreamInterruptedError
from ..engine import (
    Cancelled,
    Delta,
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
    ThinkingDelta,
    ToolInputDelta,
    ToolResult,
    ToolUse,
    ToolUseBlock,
    Usage,
)

__all__ = ("ALL_KINDS", "chunkings", "event_streams")

#: The content kinds a turn may contain.
ALL_KINDS: Final = frozenset({"text", "thinking", "tool_use", "output"})
# The order kinds are drawn in: examples shrink toward the first (plain text).
_KIND_ORDER: Final = ("text", "thinking", "tool_use", "output")

# Event class names accepted in ``kinds=`` as aliases of the content kinds.
_KIND_ALIASES: Final = {
    "text": "text",
    "delta": "text",
    "thinking": "thinking",
    "thinkingdelta": "thinking",
    "tool_use": "tool_use",
    "tool": "tool_use",
    "tooluse": "tool_use",
    "toolinputdelta": "tool_use",
    "toolresult": "tool_use",
    "output": "output",
    "partialoutput": "output",
}

#: Default step paths: a plain step, a batch task and a parallel branch.
DEFAULT_STEP_NAMES: Final = ("draft", "batch[1]", "par.b")

#: Gaps between consecutive events, in seconds. Dyadic, so sums of them are exact floats.
_GAPS: Final = (0.0, 0.0078125, 0.125, 1.0)

#: The run id of generated events.
RUN_ID: Final = "run-test"

# Text drawn for deltas: mostly ASCII, some multi-byte and a newline.
_ALPHABET: Final = st.sampled_from("abcdefgh xyz\néλ🙂")
_JSON_VALUES: Final = st.one_of(
    st.integers(-1000, 1000), st.booleans(), st.none(), st.text(_ALPHABET, max_size=6)
)
# Strategies built once: building them per draw dominates generation time.
_TEXTS: Final = st.text(_ALPHABET, min_size=1, max_size=12)
_THOUGHTS: Final = st.text(_ALPHABET, min_size=1, max_size=8)
_TOOL_NAMES: Final = st.sampled_from(("Read", "Write", "Grep"))
_TOOL_INPUTS: Final = st.dictionaries(st.sampled_from("abc"), _JSON_VALUES, max_size=2)
_GAP_DRAWS: Final = st.sampled_from(_GAPS)
_RETRY_DELAYS: Final = st.sampled_from((0.0, 0.5, 1.0))
_BOOLS: Final = st.booleans()
_RUN_LENGTHS: Final = st.sampled_from((1, 2, 4, 8))
_USAGE_TOKENS: Final = st.integers(1, 50)
_ERRORS: Final = st.sampled_from(("overloaded", "interrupted")).map(
    lambda kind: OverloadedError("overloaded: try again later")
    if kind == "overloaded"
    else StreamInterruptedError("connection lost")
)


@functools.lru_cache(maxsize=512)
def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


@functools.lru_cache(maxsize=64)
def _choices(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


@functools.lru_cache(maxsize=512)
def _cut_sets(length: int, limit: int) -> st.SearchStrategy[set[int]]:
    return st.sets(st.integers(1, length - 1), max_size=limit)


@functools.lru_cache(maxsize=64)
def _kind_lists(kinds: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(kinds), min_size=1, max_size=3)


def _split(draw: st.DrawFn, text: str, max_chunks: int | None = None) -> list[str]:
    if not text:
        return []
    limit = len(text) - 1 if max_chunks is None else max(0, min(len(text), max_chunks) - 1)
    cuts = draw(_cut_sets(len(text), limit)) if len(text) > 1 and limit else set()
    bounds = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def chunkings(text: str, *, max_chunks: int | None = None) -> st.SearchStrategy[list[str]]:
    """Split *text* at random points into non-empty pieces that join back to it.

    Args:
        text: The text to split; ``""`` gives ``[]``.
        max_chunks: At most this many pieces (default: one per character).

    Returns:
        A strategy for lists of non-empty strings with ``"".join(pieces) == text``;
        it shrinks towards a single piece.
    """
    return st.composite(lambda draw: _split(draw, text, max_chunks))()


def _normalize_kinds(kinds: Collection[str] | str) -> frozenset[str]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    out = set()
    for kind in kinds:
        key = _KIND_ALIASES.get(kind.lower())
        if key is None:
            raise ValueError(f"unknown event kind {kind!r}; expected some of {sorted(ALL_KINDS)}")
        out.add(key)
    if not out:
        raise ValueError("kinds must name at least one of 'text', 'thinking', 'tool_use'")
    return frozenset(out)


@attrs.define
class _Body:
    """One attempt's events (without envelope numbers) and what they add up to."""

    events: list[dict[str, Any]] = attrs.field(factory=list)
    text: list[str] = attrs.field(factory=list)
    messages: list[int] = attrs.field(factory=list)  # indices of Message entries


def _turn(draw: st.DrawFn, kinds: frozenset[str], step_no: int, attempt: int, turn: int) -> list[tuple]:
    """Draw one model call: content blocks, then its Message, then its ToolResults."""
    block_kinds = draw(_kind_lists(tuple(k for k in _KIND_ORDER if k in kinds)))
    out: list[tuple] = []
    blocks: list[Any] = []
    tool_uses: list[tuple[str, str]] = []
    for index, kind in enumerate(block_kinds):
        if kind == "text":
            text = draw(_TEXTS)
            for piece in _split(draw, text):
                out.append((Delta, {"content": piece, "index": index}))
            blocks.append(TextBlock(text))
        elif kind == "thinking":
            text = draw(_THOUGHTS)
            for piece in _split(draw, text):
                out.append((ThinkingDelta, {"content": piece, "index": index}))
            blocks.append(ThinkingBlock(text))
        elif kind == "output":  # tool-based structured output: its input as PartialOutput values
            tool_id = f"toolu_{step_no}_{attempt}_{turn}_{index}"
            value = draw(_TOOL_INPUTS)
            raw = json.dumps(value)
            last: Any = None
            seen = ""
            for piece in _split(draw, raw, 6):
                out.append(
                    (ToolInputDelta, {"tool_use_id": tool_id, "partial_json": piece, "index": index})
                )
                seen += piece
                partial = _partial_value(seen)
                if partial is not None and partial != last:
                    out.append((PartialOutput, {"value": partial, "tool_use_id": tool_id}))
                    last = partial
            out.append((ToolUse, {"tool_use_id": tool_id, "name": "final_output", "input": value}))
            out.append((PartialOutput, {"value": value, "complete": True, "tool_use_id": tool_id}))
            blocks.append(ToolUseBlock(tool_id, "final_output", value))
        else:
            tool_id = f"toolu_{step_no}_{attempt}_{turn}_{index}"
            name = draw(_TOOL_NAMES)
            value = draw(_TOOL_INPUTS)
            for piece in _split(draw, json.dumps(value), 6):
                out.append(
                    (ToolInputDelta, {"tool_use_id": tool_id, "partial_json": piece, "index": index})
                )
            out.append((ToolUse, {"tool_use_id": tool_id, "name": name, "input": value}))
            blocks.append(ToolUseBlock(tool_id, name, value))
            tool_uses.append((tool_id, name))
    usage = Usage(input_tokens=10, output_tokens=draw(_USAGE_TOKENS))
    stop = "tool_use" if tool_uses else "end_turn"
    out.append(
        (Message, {"role": "assistant", "content": tuple(blocks), "usage": usage, "stop_reason": stop})
    )
    for tool_id, name in tool_uses:
        is_error = draw(_BOOLS)
        out.append(
            (
                ToolResult,
                {"tool_use_id": tool_id, "name": name, "content": "result", "is_error": is_error},
            )
        )
    return out


def _partial_value(text: str) -> Any:
    """The value of a JSON prefix as ``PartialOutput`` carries it (``None``: nothing yet)."""
    from ..tools import PartialJson  # the parser the engine's output tool uses

    return PartialJson().feed(text)


def _text_of(body: Sequence[tuple]) -> str:
    return "".join(fields["content"] for cls, fields in body if cls is Delta)


def _turn_count(draw: st.DrawFn, kinds: frozenset[str]) -> int:
    return draw(_ints(1, 2)) if "tool_use" in kinds else 1


def _kept(body: Sequence[tuple]) -> list[tuple]:
    """What a response keeps of *body*: every finished call, and the call in progress.

    A ``Retrying`` supersedes the events since the last ``Message`` or
    ``ToolResult`` (the failed call's; only deltas and ``ToolUse`` can be there).
    """
    kept: list[tuple] = []
    call: list[tuple] = []
    for cls, fields in body:
        if cls is Retrying:
            call = []
        elif cls is StepStarted:
            continue
        else:
            call.append((cls, fields))
            if cls in (Message, ToolResult):
                kept.extend(call)
                call = []
    return kept + call


@st.composite
def _step_events(
    draw: st.DrawFn,
    step: str,
    step_no: int,
    kinds: frozenset[str],
    allow_retries: bool,
    allow_failures: bool,
    allow_cancel: bool,
) -> list[tuple]:
    """Draw one step's (class, fields) list, without envelope numbers.

    A retry resumes: a failed call (a prefix of a call's output, before its
    ``Message``) is followed by ``Retrying``, then the next attempt repeats
    that call alone; the finished calls before it stay in the response.
    """
    out: list[tuple] = [(StepStarted, {"provider": "scripted", "model": "mock-model", "attempt": 1})]
    turns = _turn_count(draw, kinds)
    retries = draw(_ints(0, 2)) if allow_retries else 0
    retry_turns = sorted(draw(_ints(0, turns - 1)) for _ in range(retries))
    attempt = 1
    for turn in range(turns):
        for _ in range(retry_turns.count(turn)):
            failed = _turn(draw, kinds, step_no, attempt, turn)
            before_message = next(i for i, (cls, _) in enumerate(failed) if cls is Message)
            cut = failed[: draw(_ints(0, before_message))]
            out.extend((cls, {**fields, "attempt": attempt}) for cls, fields in cut)
            started = any(cls in (Delta, ThinkingDelta, ToolInputDelta, ToolUse) for cls, _ in cut)
            out.append(
                (
                    Retrying,
                    {
                        "attempt": attempt,
                        "reason": "overloaded",
                        "delay": draw(_RETRY_DELAYS),
                        "output_may_have_started": started,
                        "next_attempt": attempt + 1,
                    },
                )
            )
            attempt += 1
        call = _turn(draw, kinds, step_no, attempt, turn)
        out.extend((cls, {**fields, "attempt": attempt}) for cls, fields in call)
    terminals = ["done"]
    if allow_failures:
        terminals.append("failed")
    if allow_cancel:
        terminals.append("cancelled")
    terminal = draw(_choices(tuple(terminals)))
    if terminal != "done":
        out = out[: draw(_ints(1, len(out)))]
    attempt = out[-1][1]["attempt"]
    if out[-1][0] is Retrying:
        attempt = out[-1][1]["next_attempt"]
    body = _kept(out)
    text = _text_of(body)
    n_deltas = sum(1 for cls, _ in body if cls in (Delta, ThinkingDelta, ToolInputDelta))
    n_messages = sum(1 for cls, _ in body if cls in (Message, ToolResult))
    usage = Usage()
    for cls, fields in body:
        if cls is Message:
            usage = usage + fields["usage"]
    outputs = [f["value"] for cls, f in body if cls is PartialOutput and f.get("complete")]
    response = Response(
        text=text,
        output=outputs[-1] if outputs else None,
        usage=usage,
        model="mock-model",
        stop_reason="end_turn" if terminal == "done" else None,
        metrics=Metrics(delta_count=n_deltas, message_count=n_messages),
    )
    if terminal == "done":
        out.append((Done, {"attempt": attempt, "response": response, "_messages": True}))
    elif terminal == "failed":
        error = draw(_ERRORS)
        out.append((Failed, {"attempt": attempt, "error": error, "message": str(error), "partial": response}))
    else:
        out.append((Cancelled, {"attempt": attempt, "partial": response}))
    return out


def event_streams(
    *,
    steps: int | tuple[int, int] = (1, 3),
    kinds: Collection[str] | str = ALL_KINDS,
    allow_retries: bool = True,
    allow_failures: bool = True,
    allow_cancel: bool = True,
    step_names: Sequence[str] = DEFAULT_STEP_NAMES,
    run_id: str = RUN_ID,
) -> st.SearchStrategy[list[Event]]:
    """Draw a valid, interleaved, enveloped event sequence for one or more steps.

    Each step starts with ``StepStarted``, may have failed calls (a prefix of a
    call's output, then ``Retrying``; the next attempt repeats that call, the
    finished calls before it stay), and ends with exactly one terminal:
    ``Done`` (whose ``response.text`` is exactly the kept ``Delta`` text: every
    finished call's, none of a failed call's), ``Failed`` or ``Cancelled``. Tool inputs arrive as ``ToolInputDelta`` pieces
    (JSON split at random points) followed by ``ToolUse`` with the parsed input.
    ``seq`` strictly increases per step; ``at`` never decreases.

    Args:
        steps: How many steps: an exact count or an inclusive ``(min, max)``.
        kinds: Content kinds to draw from: ``"text"`` (``Delta``), ``"thinking"``
            (``ThinkingDelta``), ``"tool_use"`` (``ToolInputDelta``, ``ToolUse``,
            ``ToolResult``). Event class names are accepted too.
        allow_retries: Draw failed calls and ``Retrying`` events.
        allow_failures: Allow ``Failed`` as a terminal.
        allow_cancel: Allow ``Cancelled`` as a terminal.
        step_names: Step paths to use, in order (at least as many as the max steps).
        run_id: The envelope's ``run_id``.

    Returns:
        A strategy for lists of events.

    Raises:
        ValueError: at once, for impossible arguments.
    """
    lo, hi = (steps, steps) if isinstance(steps, int) else steps
    if not 1 <= lo <= hi:
        raise ValueError(f"steps must be >= 1 and min <= max, got {steps!r}")
    if hi > len(step_names):
        raise ValueError(f"{hi} steps need at least {hi} step_names, got {len(step_names)}")
    wanted = _normalize_kinds(kinds)
    return _event_streams(
        lo, hi, wanted, allow_retries, allow_failures, allow_cancel, tuple(step_names), run_id
    )


@st.composite
def _event_streams(
    draw: st.DrawFn,
    lo: int,
    hi: int,
    wanted: frozenset[str],
    allow_retries: bool,
    allow_failures: bool,
    allow_cancel: bool,
    step_names: tuple[str, ...],
    run_id: str,
) -> list[Event]:
    count = draw(_ints(lo, hi))
    per_step = [
        draw(
            _step_events(
                step_names[i], i, wanted, allow_retries, allow_failures, allow_cancel
            )
        )
        for i in range(count)
    ]
    # Interleave in runs: draw which unfinished step emits next, how many events
    # in a row, and the gap before the run (few draws: generation and shrinking stay fast).
    positions = [0] * count
    order: list[tuple[int, float]] = []
    while True:
        live = [i for i in range(count) if positions[i] < len(per_step[i])]
        if not live:
            break
        pick = live[draw(_ints(0, len(live) - 1))] if len(live) > 1 else live[0]
        run = min(draw(_RUN_LENGTHS), len(per_step[pick]) - positions[pick])
        gap = draw(_GAP_DRAWS) if order else 0.0
        order.extend((pick, gap if k == 0 else 0.0) for k in range(run))
        positions[pick] += run
    seqs = [0] * count
    cursors = [0] * count
    messages: list[list[Message]] = [[] for _ in range(count)]
    events: list[Event] = []
    at = 0.0
    for i, gap in order:
        cls, fields = per_step[i][cursors[i]]
        cursors[i] += 1
        seqs[i] += 1
        at += gap
        fields = dict(fields)
        fields.setdefault("attempt", 1)
        envelope = {"run_id": run_id, "step": step_names[i], "seq": seqs[i], "at": at}
        if fields.pop("_messages", False):
            # a retry supersedes only a failed call, which never sent its Message: every one is kept
            fields["response"] = attrs.evolve(fields["response"], messages=tuple(messages[i]))
        event = cls(**envelope, **fields)
        if isinstance(event, Message):
            messages[i].append(event)
        events.append(event)
    return events
