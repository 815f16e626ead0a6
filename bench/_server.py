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
(``trio.sleep_until``): the fake server's general scenario machinery costs about
100 µs of CPU per event, too much to pace 1,000 streams at 20 deltas/s (20,000
events/s) from one core; this costs a fraction of that.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


def _bench_api() -> Any:
    import trio

    from sluiceway.testing.fake_api import FakeAPI, response_head

    class BenchAPI(FakeAPI):
        async def _stream_sse(
            self, stream: Any, name: str, params: dict[str, str], headers: dict[str, str], buf: bytearray
        ) -> bool:
            if params.get("stamp") != "1":
                return await super()._stream_sse(stream, name, params, headers, buf)
            n = int(params.get("deltas", "10"))  # paced at 1 / _DELAY per second (delay_ms is ignored)
            head = response_head(200, "text/event-stream; charset=utf-8", headers, chunked=True)
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
            delta = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"text_delta","text":"%.6f "}}\n\n'
            )
            monotonic = time.monotonic
            tick = _DELAY / _SLOTS
            at = trio.current_time()
            k = 0
            late = self._late  # per second of time.monotonic(): the latest a tick ran behind its schedule
            while True:
                at += tick
                await trio.sleep_until(at)
                behind = trio.current_time() - at  # (a late tick's deltas go out in a burst after it)
                second = int(monotonic())
                if behind > late.get(second, 0.0):
                    late[second] = behind
                slot = self._slots[k % _SLOTS]
                k += 1
                keep = []
                for entry in slot:
                    if entry.remaining <= 0:
                        entry.done.set()
                        continue
                    data = delta % monotonic()
                    frame = entry.backlog + b"%x\r\n%s\r\n" % (len(data), data)
                    try:
                        sent = entry.sock.send(frame)
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        entry.broken = True
                        entry.done.set()
                        continue
                    entry.backlog = frame[sent:]
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        entry.done.set()
                    else:
                        keep.append(entry)
                slot[:] = keep

    api = BenchAPI(port=0)
    api._slots = [[] for _ in range(_SLOTS)]
    api._next_slot = 0
    api._late = {}
    return api


#: The pacing of ``stamp=1`` streams: one delta per stream every _DELAY seconds (20/s), sent
#: in _SLOTS turns spread over that period.
_DELAY = 0.05
_SLOTS = 10


class _Paced:
    __slots__ = ("backlog", "broken", "done", "remaining", "sock")

    def __init__(self, sock: Any, remaining: int) -> None:
        import trio

        self.sock = sock
        self.remaining = remaining
        self.backlog = b""
        self.broken = False
        self.done = trio.Event()


def main() -> None:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))
    except (ValueError, OSError):
        pass
    api = _bench_api()
    port = api.start()
    print(port, flush=True)
    for _ in sys.stdin:  # a report per line, until the parent closes our stdin
        usage = resource.getrusage(resource.RUSAGE_SELF)
        late = {str(k): round(v * 1e3, 1) for k, v in sorted(api._late.items())}
        print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime, "stats": api.stats(), "late_ms": late}), flush=True)
    api.stop()


if __name__ == "__main__":
    main()
