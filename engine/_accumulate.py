"""What a step's model calls produced so far: provider events folded into content blocks and usage.

I/O-free: the step actor feeds each provider event here, then sends the
enveloped events itself. An ``Attempt`` holds the finished calls' messages and
usage, and the call in progress (its blocks and usage), which a partial
response counts too. A retry resumes: it supersedes only the call in progress
(``abandon_call``); the finished calls stay, whichever attempt made them.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from sluiceway._errors import ProviderError

from ._events import ContentBlock, Message, TextBlock, ThinkingBlock, ToolUseBlock, Usage
from ._provider_events import (
    BlockStart,
    InputJsonChunk,
    MessageDeltaInfo,
    MessageStart,
    TextChunk,
    ThinkingChunk,
)

__all__ = ("CHUNK", "Attempt", "Block", "BlockKind", "merge_usage")

BlockKind = Literal["text", "thinking", "tool_use"]

#: Pieces a block keeps before joining them into one chunk: bounds the per-piece overhead
#: of many small deltas, each a ``str`` object of its own until joined.
CHUNK: Final = 1024

_UNPARSED: Any = object()


class Block:
    """A content block being accumulated: ``text`` (joined so far) then ``parts`` (the latest pieces)."""

    __slots__ = ("kind", "name", "parsed", "parts", "signature", "text", "tool_use_id")

    def __init__(self, kind: str, tool_use_id: str | None = None, name: str | None = None) -> None:
        self.kind = kind
        """``text``, ``thinking`` or ``tool_use``."""
        self.tool_use_id = tool_use_id
        self.name = name
        """The tool's name, for a ``tool_use`` block."""
        self.parts: list[str] = []
        """The pieces not yet joined into ``text``."""
        self.text = ""
        """The pieces joined so far, grown in place."""
        self.signature: str | None = None
        """A thinking block's signature."""
        self.parsed: Any = _UNPARSED
        """A stopped ``tool_use`` block's input, parsed."""

    def compact(self) -> None:
        """Append the pieces so far to ``text`` (every ``CHUNK`` pieces, and in ``joined``).

        ``text`` is grown in place: with the attribute cleared, the local is the
        string's only reference, so CPython resizes it rather than copying. A
        long text thus peaks at about once its size, where joining a list of
        chunks at the end would hold the chunks and the result together.
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

    def finish(self) -> ContentBlock:
        """The block as a ``Message``'s content block (a tool input that never stopped: parsed as it is)."""
        if self.kind == "text":
            return TextBlock(self.joined())
        if self.kind == "thinking":
            return ThinkingBlock(self.joined(), self.signature)
        parsed = self.parsed
        if parsed is _UNPARSED:
            raw = self.joined()
            try:
                parsed = json.loads(raw) if raw.strip() else {}
            except ValueError:
                parsed = raw
        return ToolUseBlock(self.tool_use_id or "", self.name or "", parsed)


class Attempt:
    """What a step's attempts produced so far: the finished calls, and the call in progress.

    A call is ``begin_call``, then its provider events (``start_message``,
    ``start_block``, ``add_chunk``, ``stop_block``,
    ``update_message``), then ``end_call``, whose content the caller makes into
    the ``Message`` it appends to ``messages`` (with the tool results' user
    turn, when there is one), or ``abandon_call`` when the call failed and a
    retry supersedes it.
    """

    __slots__ = (
        "blocks", "call_first_delta", "call_model", "call_stop_reason", "call_tool_use", "call_usage",
        "delta_count", "messages", "model", "stop_reason", "usage", "usage_by_model",
    )

    def __init__(self) -> None:
        self.blocks: dict[int, Block] = {}
        """The blocks of the call in progress, by index (their text counts in a partial response)."""
        self.messages: list[Message] = []
        """The finished calls' messages (and the tool results' user turns)."""
        self.usage = Usage()
        """The finished calls' usage, summed."""
        self.usage_by_model: dict[str, Usage] = {}
        """The finished calls' usage, summed per model (a retry may switch to a fallback model)."""
        self.call_usage: Usage | None = None
        """The usage of the call in progress, once it reported any."""
        self.call_model: str | None = None
        """The model the call in progress reported, once it did."""
        self.call_stop_reason: str | None = None
        self.call_first_delta = 0
        """``delta_count`` when the call in progress began."""
        self.call_tool_use = False
        """True once a ``tool_use`` block of the call in progress stopped (a ``ToolUse`` was sent)."""
        self.model: str | None = None
        """The model that answered (the request's when no call said)."""
        self.stop_reason: str | None = None
        """The last finished call's stop reason."""
        self.delta_count = 0
        """Deltas of the finished calls and of the call in progress (an abandoned call's are taken back)."""

    def begin_call(self) -> None:
        """Start a model call: no blocks, no usage yet."""
        self.blocks = {}
        self.call_usage = None
        self.call_model = None
        self.call_stop_reason = None
        self.call_first_delta = self.delta_count
        self.call_tool_use = False

    def start_message(self, event: MessageStart) -> None:
        """``message_start``: the model, and the call's first usage."""
        if event.model is not None:
            self.model = self.call_model = event.model
        self.call_usage = event.usage

    def update_message(self, event: MessageDeltaInfo) -> None:
        """``message_delta``: the stop reason, and the call's usage so far."""
        if event.stop_reason is not None:
            self.call_stop_reason = event.stop_reason
        if event.usage is not None:
            self.call_usage = merge_usage(self.call_usage or Usage(), event.usage)

    def start_block(self, event: BlockStart) -> None:
        """``content_block_start``: a new block at its index."""
        self.blocks[event.index] = Block(event.kind, event.tool_use_id, event.name)

    def add_chunk(self, chunk: TextChunk | ThinkingChunk | InputJsonChunk) -> Block | None:
        """Fold a content chunk into its block and return the block.

        A chunk without a ``content_block_start`` opens the block it implies.
        Returns None for a thinking chunk without text (a signature alone): no delta.
        """
        signature = None
        if type(chunk) is TextChunk:
            piece, kind = chunk.text, "text"
        elif type(chunk) is InputJsonChunk:
            piece, kind = chunk.partial_json, "tool_use"
        else:
            assert type(chunk) is ThinkingChunk
            piece, kind, signature = chunk.text, "thinking", chunk.signature
        block = self.blocks.get(chunk.index)
        if block is None:
            block = self.blocks[chunk.index] = Block(kind)
        if kind == "thinking":
            if signature is not None:
                block.signature = signature
            if not piece:
                return None
        parts = block.parts
        parts.append(piece)
        if len(parts) >= CHUNK:
            block.compact()
        self.delta_count += 1
        return block

    def stop_block(self, index: int, *, step: str) -> Block | None:
        """``content_block_stop``: a ``tool_use`` block's input is parsed; returns that block, else None.

        Raises:
            ProviderError: the tool input is not JSON.
        """
        block = self.blocks.get(index)
        if block is None or block.kind != "tool_use":
            return None
        raw = block.joined()
        try:
            block.parsed = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            error = ProviderError(
                f"tool {block.name!r} ({block.tool_use_id}): input is not JSON: {raw[:200]!r}", step=step
            )
            raise error from exc
        self.call_tool_use = True
        return block

    def end_call(self, model: str) -> tuple[Usage, tuple[ContentBlock, ...]]:
        """The call is complete: add its usage, and return it with the content of its message.

        *model* is the one the call asked for, kept when no event named one.
        """
        content = tuple(self.blocks[i].finish() for i in sorted(self.blocks))
        usage = self.call_usage or Usage()
        if self.model is None:
            self.model = model
        call_model = self.call_model or self.model
        self.blocks = {}
        self.usage = self.usage + usage
        self.usage_by_model[call_model] = self.usage_by_model.get(call_model, Usage()) + usage
        self.call_usage = None
        self.call_model = None
        self.stop_reason = self.call_stop_reason
        return usage, content

    def abandon_call(self, model: str) -> tuple[Usage, str]:
        """The call in progress failed and a retry supersedes it: drop its output, return its usage.

        Its blocks and deltas leave the accumulation (they are no part of the
        response); the finished calls stay. Returns the call's usage as far as
        its stream reported it (billed all the same) and the model that made it
        (*model*, the one the call asked for, when no event named one).
        """
        usage = self.call_usage or Usage()
        call_model = self.call_model or model
        self.blocks = {}
        self.delta_count = self.call_first_delta
        self.call_usage = None
        self.call_model = None
        self.call_stop_reason = None
        self.call_tool_use = False
        return usage, call_model

    def total_usage(self) -> Usage:
        """The finished calls' usage plus the call in progress'."""
        return self.usage if self.call_usage is None else self.usage + self.call_usage

    def text(self) -> str:
        """The attempt's text: its assistant messages' text blocks, then the open ones, in order.

        One text block (the common case) is its string itself, not a copy.
        """
        texts = [
            block.text
            for message in self.messages
            if message.role == "assistant"
            for block in message.content
            if type(block) is TextBlock
        ]
        texts += [block.joined() for block in self.blocks.values() if block.kind == "text"]
        return "".join(texts)

    def output_started(self) -> bool:
        """True once any delta or message was sent (finished calls included)."""
        return self.delta_count > 0 or bool(self.messages)

    def call_output_started(self) -> bool:
        """True once the call in progress sent a delta or a ``ToolUse``: what a retry of it supersedes."""
        return self.delta_count > self.call_first_delta or self.call_tool_use


def merge_usage(start: Usage, delta: Usage) -> Usage:
    """``message_delta`` usage is cumulative for the call: its counts replace, never add."""
    return Usage(
        delta.input_tokens or start.input_tokens,
        delta.output_tokens,
        delta.cache_creation_input_tokens or start.cache_creation_input_tokens,
        delta.cache_read_input_tokens or start.cache_read_input_tokens,
    )
