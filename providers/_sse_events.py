"""The Messages API's stream events, as ``(event, data)`` pairs, to provider events; no I/O.

``providers._sse`` cuts the response body into ``(event, data)`` pairs; this
module decodes each pair's JSON and turns it into the provider events of
``sluiceway.engine._provider_events``. It keeps the little state a stream
needs (the blocks passed on, whether a delta or ``message_stop`` came, an
error event's payload) and nothing about the call: the live provider feeds it
and owns the deadlines, the connection and the error mapping.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable, MutableSequence, Sequence
from typing import Any, Final

from sluiceway.engine._events import Usage
from sluiceway.engine._provider_events import (
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

from sluiceway._errors import ProviderError

__all__ = ("SSEEventConverter", "usage_of")


class SSEEventConverter:
    """Turn one stream's SSE events into provider events.

    Only the Messages API's own events count: ``ping``, comments and unknown
    event names are skipped, and so are blocks we neither run nor show
    (server tools and their results run at the API) with their deltas and
    stops. Nothing after an ``error`` event is converted: its payload is kept
    in ``error`` for the caller to raise once the events before it are
    delivered.

    Args:
        step: The step named by a malformed-event error.
        request_id: The ``request-id`` the ``MessageStart`` carries (it may be
            set later, once the response head is in).
    """

    __slots__ = ("_blocks", "done", "error", "request_id", "started", "step")

    def __init__(self, step: str | None = None, request_id: str | None = None) -> None:
        self.step = step
        self.request_id = request_id
        self.started = False
        """True once a delta (text, thinking or tool input) was converted: the first token came."""
        self.done = False
        """True once ``message_stop`` was converted."""
        self.error: dict[str, Any] | None = None
        """An ``error`` event's payload; nothing after it is converted."""
        self._blocks: set[int] = set()
        """Indices of the open blocks passed on (others' deltas and stops are dropped)."""

    def convert(self, pairs: Sequence[tuple[str | None, str]], out: MutableSequence[ProviderEvent]) -> bool:
        """Append the provider events for *pairs* to *out*, in order.

        Returns:
            True when at least one pair was a Messages API event with data (progress
            for a deadline), False for nothing but pings, comments or unknown events.

        Raises:
            ProviderError: An event's data is not JSON.
        """
        if self.error is not None:
            return False
        if len(pairs) == 1:  # a paced stream's read: one event, no lists
            name, data = pairs[0]
            to_event = _CONVERTERS.get(name)
            if to_event is None or not data:
                return False
            event = to_event(self, self._load(data))
            if event is not None:
                if not self.started and isinstance(event, _DELTAS):
                    self.started = True
                out.append(event)
            return True
        events = [(name, data) for name, data in pairs if name in _CONVERTERS and data]
        if not events:
            return False
        payloads = self._loads([data for _, data in events])
        for (name, _), payload in zip(events, payloads, strict=True):
            event = _CONVERTERS[name](self, payload)
            if event is None:
                if self.error is not None:
                    break
                continue
            if not self.started and isinstance(event, _DELTAS):
                self.started = True
            out.append(event)
        return True

    def _load(self, data: str) -> Any:
        """One event's JSON: json's own C scanner (json.loads adds two Python calls and two
        regex matches); json.loads for what the scan does not take whole (surrounding
        whitespace), which also names a malformed event."""
        try:
            value, end = _scan_json(data, 0)
            if end == len(data):
                return value
        except (ValueError, StopIteration):
            pass
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ProviderError(f"malformed event from the API: {data[:80]!r}", step=self.step) from exc

    def _loads(self, datas: list[str]) -> list[Any]:
        """Several events' JSON in one scan (one call into the scanner rather than one per event)."""
        if len(datas) == 1:
            return [self._load(datas[0])]
        text = "[" + ",".join(datas) + "]"
        try:
            value, end = _scan_json(text, 0)
            if end == len(text) and len(value) == len(datas):
                return value
        except (ValueError, StopIteration):
            pass
        return [self._load(data) for data in datas]

    # -- one converter per SSE event name -------------------------------------

    def _message_start(self, payload: dict[str, Any]) -> ProviderEvent:
        message = payload.get("message") or {}
        return MessageStart(
            model=message.get("model"),
            usage=usage_of(message.get("usage") or {}),
            message_id=message.get("id"),
            request_id=self.request_id,
        )

    def _block_start(self, payload: dict[str, Any]) -> ProviderEvent | None:
        block = payload.get("content_block") or {}
        kind = block.get("type")
        index = payload.get("index", 0)
        if kind == "text":
            event = BlockStart(index, "text")
        elif kind in ("thinking", "redacted_thinking"):
            event = BlockStart(index, "thinking")
        elif kind == "tool_use":
            event = BlockStart(index, "tool_use", tool_use_id=block.get("id"), name=block.get("name"))
        else:
            # server tools and their results run at the API: not ours to run or show
            return None
        self._blocks.add(index)
        return event

    def _block_delta(self, payload: dict[str, Any]) -> ProviderEvent | None:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        index = payload.get("index", 0)
        if index not in self._blocks:
            return None
        if kind == "text_delta":
            return TextChunk(index, delta.get("text", ""))
        if kind == "input_json_delta":
            return InputJsonChunk(index, delta.get("partial_json", ""))
        if kind == "thinking_delta":
            return ThinkingChunk(index, delta.get("thinking", ""))
        if kind == "signature_delta":
            return ThinkingChunk(index, "", signature=delta.get("signature", ""))
        return None

    def _block_stop(self, payload: dict[str, Any]) -> ProviderEvent | None:
        index = payload.get("index", 0)
        if index not in self._blocks:
            return None
        self._blocks.discard(index)
        return BlockStop(index)

    def _message_delta(self, payload: dict[str, Any]) -> ProviderEvent:
        delta = payload.get("delta") or {}
        usage = payload.get("usage") or {}
        extra = {k: v for k, v in delta.items() if k != "stop_reason" and v is not None}
        return MessageDeltaInfo(
            stop_reason=delta.get("stop_reason"),
            usage=Usage(output_tokens=usage.get("output_tokens") or 0),
            extra=extra or None,
        )

    def _message_stop(self, payload: dict[str, Any]) -> ProviderEvent:
        self.done = True
        return MessageStop()

    def _error(self, payload: dict[str, Any]) -> None:
        self.error = payload
        return None


def usage_of(raw: dict[str, Any]) -> Usage:
    """The ``Usage`` of a Messages API ``usage`` object (absent or null counts are 0)."""
    return Usage(
        input_tokens=raw.get("input_tokens") or 0,
        output_tokens=raw.get("output_tokens") or 0,
        cache_creation_input_tokens=raw.get("cache_creation_input_tokens") or 0,
        cache_read_input_tokens=raw.get("cache_read_input_tokens") or 0,
    )


#: json's scanner (the C one when built): ``(value, end)`` for the JSON value at an index
# (typeshed types make_scanner's argument as itself; json passes its decoder, as here)
_scan_json: Final[Callable[[str, int], tuple[Any, int]]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # see the comment above
)

# the events that end the first-token wait
_DELTAS: Final = (TextChunk, ThinkingChunk, InputJsonChunk)

#: SSE event name -> the converter of its payload (None: nothing to pass on); keyed by
#: ``str | None`` as the parser's names are (an event without a name has no converter)
_CONVERTERS: Final[dict[str | None, Callable[[SSEEventConverter, dict[str, Any]], ProviderEvent | None]]] = {
    "message_start": SSEEventConverter._message_start,
    "content_block_start": SSEEventConverter._block_start,
    "content_block_delta": SSEEventConverter._block_delta,
    "content_block_stop": SSEEventConverter._block_stop,
    "message_delta": SSEEventConverter._message_delta,
    "message_stop": SSEEventConverter._message_stop,
    "error": SSEEventConverter._error,
}
