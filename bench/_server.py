"""The fake Messages API in its own process, for the benchmarks.

``python bench/_server.py`` prints the port on the first line of stdout, then
for each line read on stdin prints its own CPU seconds so far (user + system),
its counters, and per second of ``time.monotonic()`` how far behind its schedule
its pacing ticker ran at worst (``late_ms``), as one JSON line; it stops when its
stdin closes. Its CPU therefore never counts against the client being measured.

One addition to ``sluiceway.testing.fake_api``: the scenario parameter
``stamp=1`` (with ``deltas`` and ``delay_ms``) streams a ``text`` message whose
deltas are ``"<time.monotonic()> "``, taken when each delta is written, so a
client on the same machine can measure delivery lag (Linux's monotonic clock is
system-wide). That path writes pre-formatted bytes on an absolute schedule
(``trio.sleep_until``) from one ticker task: the fake server's general scenario
machinery costs too much CPU per event to pace 1,000 streams at 20 deltas/s
(20,000 events/s) from one core (bench/README.md has the figure).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import trio

from sluiceway.testing.fake_api import FakeAPI, response_head

#: The pacing of ``stamp=1`` streams: one delta per stream every _DELAY seconds (20/s), sent
#: in _SLOTS turns spread over that period.
_DELAY = 0.05
_SLOTS = 10

#: One stamped delta's SSE event; ``%.6f`` is ``time.monotonic()`` as it is sent.
_DELTA = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"%.6f "}}\n\n'
)


class _Paced:
    """One stamped stream the ticker feeds: its socket, deltas to go, and bytes the socket refused."""

    __slots__ = ("backlog", "broken", "done", "remaining", "sock")

    def __init__(self, sock: Any, remaining: int) -> None:
        self.sock = sock
        self.remaining = remaining
        self.backlog = b""
        self.broken = False
        self.done = trio.Event()

    def send_next(self) -> bool:
        """Send the next delta (stamped now), after any backlog; False once the stream is done."""
        data = _DELTA % time.monotonic()
        frame = self.backlog + b"%x\r\n%s\r\n" % (len(data), data)
        try:
            sent = self.sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.broken = True
            self.done.set()
            return False
        self.backlog = frame[sent:]
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()
            return False
        return True


def _head_and_tail(n: int) -> tuple[bytes, bytes]:
    """A stamped stream's events before its deltas, and after them (*n* output tokens)."""
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_bench", "type": "message", "role": "assistant", "model": "bench", "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1},
        },
    }
    first = (
        f"event: message_start\ndata: {json.dumps(start)}\n\n"
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":""}}\n\n'
    ).encode()
    last = (
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        f'"stop_sequence":null}},"usage":{{"output_tokens":{n}}}}}\n\n'
        'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    ).encode()
    return first, last


class BenchAPI(FakeAPI):
    """The fake API plus ``stamp=1`` streams, paced by one ticker task."""

    def __init__(self) -> None:
        super().__init__(port=0)
        self._slots: list[list[_Paced]] = [[] for _ in range(_SLOTS)]
        self._next_slot = 0
        self._late: dict[int, float] = {}
        """Per second of ``time.monotonic()``: the latest a tick ran behind its schedule."""

    async def _stream_sse(
        self, stream: Any, name: str, params: dict[str, str], headers: dict[str, str], buf: bytearray
    ) -> bool:
        if params.get("stamp") != "1":
            return await super()._stream_sse(stream, name, params, headers, buf)
        n = int(params.get("deltas", "10"))  # paced at 1 / _DELAY per second (delay_ms is ignored)
        head = response_head(200, "text/event-stream; charset=utf-8", headers, chunked=True)
        first, last = _head_and_tail(n)
        entry = _Paced(stream.socket._sock, n)  # the stdlib socket: sent to without a checkpoint
        try:
            await stream.send_all(head + b"%x\r\n%s\r\n" % (len(first), first))
            self._slots[self._next_slot % _SLOTS].append(entry)
            self._next_slot += 1
            await entry.done.wait()
            if entry.broken:
                raise trio.BrokenResourceError
            await stream.send_all(entry.backlog + b"%x\r\n%s\r\n0\r\n\r\n" % (len(last), last))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            entry.remaining = 0
            self._count("disconnects")
            return False
        self._count("completed")
        return True

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tick)
            port = await nursery.start(super().serve)
            task_status.started(port)

    async def _tick(self) -> None:
        # every tick, one slot's streams get their next delta (slots take turns): each stream
        # gets one delta per _SLOTS ticks; a stream's deltas are stamped one by one as sent
        tick = _DELAY / _SLOTS
        at = trio.current_time()
        k = 0
        while True:
            at += tick
            await trio.sleep_until(at)
            self._note_late(trio.current_time() - at)  # (a late tick's deltas go out in a burst after it)
            slot = self._slots[k % _SLOTS]
            k += 1
            keep = []
            for entry in slot:
                if entry.remaining <= 0:
                    entry.done.set()
                elif entry.send_next():
                    keep.append(entry)
            slot[:] = keep

    def _note_late(self, behind: float) -> None:
        second = int(time.monotonic())
        if behind > self._late.get(second, 0.0):
            self._late[second] = behind


def main() -> None:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))
    except (ValueError, OSError):
        pass
    api = BenchAPI()
    port = api.start()
    print(port, flush=True)
    for _ in sys.stdin:  # a report per line, until the parent closes our stdin
        usage = resource.getrusage(resource.RUSAGE_SELF)
        late = {str(k): round(v * 1e3, 1) for k, v in sorted(api._late.items())}
        print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime, "stats": api.stats(), "late_ms": late}), flush=True)
    api.stop()


if __name__ == "__main__":
    main()
