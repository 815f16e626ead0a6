"""A sans-IO Server-Sent Events parser for the Messages API stream.

It yields what the SDK's ``SSEDecoder`` yields, ``(event, data)`` pairs. Lines
ending in ``\\n`` (what the Messages API sends) take a fast path in linear
time: each byte is scanned once for the blank line that ends an event, and
bytes of an unfinished event are kept until the rest arrives. From the first
``\\r`` on (a proxy that rewrote line ends), the stream goes through the SDK's
own line algorithm instead. A differential property test
(``tests/test_sse_parser.py``) checks both against the SDK's decoder for
streams cut at random byte boundaries.
"""

from __future__ import annotations

from anthropic._streaming import SSEDecoder

__all__ = ("SSEParser",)


class SSEParser:
    """Feed bytes, get ``(event, data)`` pairs; one parser per stream.

    Follows the SDK's decoder: comment lines and unknown fields are ignored,
    several ``data:`` lines join with ``\\n``, an event with neither a name nor
    data (nor an id or retry field) is not dispatched, and bytes after the last
    blank line are dropped at the end of the stream. ``event`` is ``None`` when
    the event had no (or an empty) name.
    """

    __slots__ = ("_last_id", "_pending", "_slow", "_slow_data", "_tail_newline")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._tail_newline = False
        self._last_id: str | None = None
        self._slow: SSEDecoder | None = None
        self._slow_data = b""

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        """Add *chunk*; return every event it completes, in order."""
        if not chunk:
            return []
        if self._slow is not None or b"\r" in chunk:
            return self._feed_slow(chunk)
        if b"\n\n" not in chunk and not (self._tail_newline and chunk[0] == 10):
            # no event ends here: keep the piece (joined once, when one does: linear)
            self._pending.append(chunk)
            self._tail_newline = chunk[-1] == 10
            return []
        if self._pending:
            self._pending.append(chunk)
            buf = b"".join(self._pending)
            self._pending.clear()
        else:
            buf = chunk
            if buf.find(b"\n\n") == len(buf) - 2:  # exactly one whole event (a paced stream's read)
                self._tail_newline = False
                block = buf[:-2].decode("utf-8")
                if block.startswith("event: "):
                    name, sep, data_line = block.partition("\n")
                    if sep and data_line.startswith("data: ") and "\n" not in data_line:
                        return [(name[7:] or None, data_line[6:])]
                event = self._decode_block(block)
                return [event] if event is not None else []
        end = buf.rfind(b"\n\n")
        if end + 2 < len(buf):
            rest = buf[end + 2 :]
            self._pending.append(rest)
            self._tail_newline = rest[-1] == 10
        else:
            self._tail_newline = False
        # complete events only, so no UTF-8 sequence is cut
        out: list[tuple[str | None, str]] = []
        for block in buf[:end].decode("utf-8").split("\n\n"):
            if block.startswith("event: "):
                name, sep, data_line = block.partition("\n")
                if sep and data_line.startswith("data: ") and "\n" not in data_line:
                    # the common shape: "event: NAME\ndata: JSON"
                    out.append((name[7:] or None, data_line[6:]))
                    continue
            event = self._decode_block(block)
            if event is not None:
                out.append(event)
        return out

    def _feed_slow(self, chunk: bytes) -> list[tuple[str | None, str]]:
        # the SDK's algorithm (SSEDecoder._aiter_chunks + decode), line by line
        if self._slow is None:
            self._slow = SSEDecoder()
            self._slow._last_event_id = self._last_id
            self._slow_data = b"".join(self._pending)
            self._pending.clear()
        out: list[tuple[str | None, str]] = []
        decoder = self._slow
        for line in chunk.splitlines(keepends=True):
            self._slow_data += line
            if self._slow_data.endswith((b"\r\r", b"\n\n", b"\r\n\r\n")):
                for raw_line in self._slow_data.splitlines():
                    sse = decoder.decode(raw_line.decode("utf-8"))
                    if sse is not None:
                        out.append((sse.event, sse.data))
                self._slow_data = b""
        return out

    def _decode_block(self, block: str) -> tuple[str | None, str] | None:
        # the general path, field by field as the SDK's SSEDecoder.decode does
        name: str | None = None
        data: list[str] = []
        retry: int | None = None
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                # an empty line here comes from a run of blank lines: the SDK's
                # decoder dispatches nameless events for those, which it then drops
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                if "\0" not in value:
                    self._last_id = value
            elif field == "retry":
                try:
                    retry = int(value)
                except ValueError:
                    pass
        if not name and not data and not self._last_id and retry is None:
            return None
        return (name or None, "\n".join(data))
