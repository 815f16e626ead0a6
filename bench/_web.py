"""Web view: a run's events/s with no SSE client, and with one that connected and stopped reading.

The run streams into the web view's log exactly as ``sluiceway run --web``
wires it (``log_actor`` appending, hypercorn serving ``/runs/{id}/events``).
The stalled client is a raw TCP connection that sends the request and never
reads: once the socket buffers fill, the server's writes to it block. The
claim measured: that client does not slow the run (the ratio stays near 1).

``python -m bench._web`` prints the row as JSON.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from functools import partial
from typing import Any

import trio

from sluiceway._execution import RunOptions, execute, new_run_id
from sluiceway._load import loads
from sluiceway._web._app import WebRuns
from sluiceway._web._log import RunLog, log_actor
from sluiceway._web._serve import serve_runs

#: Deltas the measured run streams (one step, mock provider, no pacing).
DELTAS = 100_000
#: Alternating repetitions of each case; the median is reported.
REPEATS = 3

_SPEC = """
name: webbench
steps:
  - name: flood
    type: claude
    prompt: "go"
    mock: {{response: "{text}", chunk_size: 4, pattern: fast}}
"""


async def _one_run(
    runs: WebRuns, port: int, out: str, *, stalled: bool, deltas: int = DELTAS
) -> tuple[float, int, int]:
    """Run the flood once; returns (events/s, events, bytes the stalled client took: always 0)."""
    spec = loads(_SPEC.format(text="abcd" * deltas))
    run_id = new_run_id()
    log = RunLog(run_id)
    runs.add(log)
    stream = None
    if stalled:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            f"GET /runs/{run_id}/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        with trio.fail_after(5):
            await log.wait_for_client()  # the server has the client: it follows the log from now on
    send, receive = trio.open_memory_channel[Any](1024)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log_actor, receive, log)
        start = time.perf_counter()
        await execute(spec, RunOptions(run_id=run_id, output_dir=out), send_events=send)
        with trio.fail_after(30):
            await log.wait_finished()
        elapsed = time.perf_counter() - start
    if stream is not None:
        await stream.aclose()
    return len(log.events) / elapsed, len(log.events), 0


async def _measure(deltas: int = DELTAS, repeats: int = REPEATS) -> dict[str, Any]:
    runs = WebRuns()
    shutdown = trio.Event()
    with tempfile.TemporaryDirectory() as out:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(partial(serve_runs, runs, "127.0.0.1", 0, shutdown=shutdown))
            port = int(urls[0].rsplit(":", 1)[1])
            free: list[float] = []
            stalled: list[float] = []
            events = 0
            for _ in range(repeats):
                rate, events, _ = await _one_run(runs, port, out, stalled=False, deltas=deltas)
                free.append(rate)
                rate, events, _ = await _one_run(runs, port, out, stalled=True, deltas=deltas)
                stalled.append(rate)
            shutdown.set()
    no_client = statistics.median(free)
    with_stalled = statistics.median(stalled)
    return {
        "name": "web view: events/s with and without a stalled SSE client",
        "events_per_run": events,
        "events_per_s_no_client": round(no_client),
        "events_per_s_stalled_client": round(with_stalled),
        "ratio_stalled_to_none": round(with_stalled / no_client, 3),
        "repeats": repeats,
    }


def web_row(deltas: int = DELTAS, repeats: int = REPEATS) -> dict[str, Any]:
    """Measure the row (events/s without and with a stalled SSE client) and return it as a dict."""
    return trio.run(_measure, deltas, repeats)


if __name__ == "__main__":
    print(json.dumps(web_row(), indent=2))
