"""Provider events: what a provider yields for one model call, before the envelope.

They mirror the Messages API stream (``message_start``, ``content_block_*``,
``message_delta``, ``message_stop``) so that every provider, mock, replay or
live, speaks one language; the step actor turns them into enveloped events.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from ._events import Usage

__all__ = (
    "BlockStart",
    "BlockStop",
    "InputJsonChunk",
    "MessageDeltaInfo",
    "MessageStart",
    "MessageStop",
    "ProviderEvent",
    "TextChunk",
    "ThinkingChunk",
)


@attrs.frozen
class MessageStart:
    """``message_start``: the call is answered."""

    model: str | None = None
    """The model that answers."""
    usage: Usage = Usage()
    """Input usage (and the first output count)."""
    message_id: str | None = None
    """The API's message id."""
    request_id: str | None = None
    """The ``request-id`` response header, when there is one."""


@attrs.frozen
class BlockStart:
    """``content_block_start``."""

    index: int
    """The block index."""
    kind: Literal["text", "thinking", "tool_use"]
    """The block type."""
    tool_use_id: str | None = None
    """For tool_use blocks."""
    name: str | None = None
    """For tool_use blocks: the tool's name."""


@attrs.frozen
class TextChunk:
    """``text_delta``."""

    index: int
    text: str


@attrs.frozen
class ThinkingChunk:
    """``thinking_delta`` (or ``signature_delta`` with ``signature`` set)."""

    index: int
    text: str
    signature: str | None = None


@attrs.frozen
class InputJsonChunk:
    """``input_json_delta``."""

    index: int
    partial_json: str


@attrs.frozen
class BlockStop:
    """``content_block_stop``."""

    index: int


@attrs.frozen
class MessageDeltaInfo:
    """``message_delta``: stop reason, and cumulative output usage."""

    stop_reason: str | None = None
    usage: Usage | None = None
    """Output tokens here are cumulative for the call, not an increment."""
    extra: dict[str, Any] | None = None


@attrs.frozen
class MessageStop:
    """``message_stop``: the call is complete."""


ProviderEvent = (
    MessageStart
    | BlockStart
    | TextChunk
    | ThinkingChunk
    | InputJsonChunk
    | BlockStop
    | MessageDeltaInfo
    | MessageStop
)
