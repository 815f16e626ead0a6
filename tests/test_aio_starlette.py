"""A real Starlette app under uvicorn, on asyncio, streams pipelines as server-sent events
through ``sluiceway.aio``, in live mode against the fake Messages API."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aio_sse_app import make_app
from sluiceway.engine import Cancelled, Delta, Event


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(fake_api: Any, tmp_path: Path) -> Iterator[tuple[str, dict[str, list[Event]]]]:
    """The app under uvicorn on loopback, in a thread with its own asyncio loop."""
    seen: dict[str, list[Event]] = {}
    port = _free_port()
    config = uvicorn.Config(
        make_app(fake_api.url, str(tmp_path), seen), host="127.0.0.1", port=port, loop="asyncio",
        log_level="warning", lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive()


async def _read_sse(client: httpx.AsyncClient, url: str, *, stop_after: int | None = None) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
                if stop_after is not None and len(events) >= stop_after:
                    break  # leaving the block closes the connection: the client is gone
    return events


def test_two_clients_each_get_their_own_complete_ordered_stream(server: Any) -> None:
    base, seen = server

    async def main() -> list[list[tuple[str, dict]]]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                _read_sse(client, f"{base}/runs?key=a&deltas=30&delay_ms=5"),
                _read_sse(client, f"{base}/runs?key=b&deltas=40&delay_ms=5"),
            )

    streams = asyncio.run(main())
    for events, deltas in zip(streams, (30, 40), strict=True):
        names = [name for name, _ in events]
        assert names[0] == "RunStarted" and names[-1] == "RunFinished"
        assert events[-1][1]["status"] == "ok"
        assert len({data["run_id"] for _, data in events}) == 1
        step = [(name, data) for name, data in events if data["step"] == "draft"]
        assert step[0][0] == "StepStarted" and step[-1][0] == "Done"
        seqs = [data["seq"] for _, data in step]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        text = "".join(data["content"] for name, data in step if name == "Delta")
        assert text == "".join(f"tok{i} " for i in range(deltas))
    assert streams[0][0][1]["run_id"] != streams[1][0][1]["run_id"]
    assert sorted(seen) == ["a", "b"]


def test_a_client_that_disconnects_cancels_its_run_and_the_upstream_call(server: Any, fake_api: Any) -> None:
    base, seen = server
    before = fake_api.stats()["disconnects"]

    async def main() -> float:
        async with httpx.AsyncClient(timeout=30) as client:
            events = await _read_sse(client, f"{base}/runs?key=gone&deltas=200&delay_ms=50", stop_after=5)
            assert [name for name, _ in events][:2] == ["RunStarted", "StepStarted"]
            return time.monotonic()

    left_at = asyncio.run(main())
    assert fake_api.wait_for("disconnects", before + 1, 5.0)
    assert fake_api.disconnect_times[-1] - left_at < 1.0
    deadline = time.monotonic() + 5
    while not (seen["gone"] and type(seen["gone"][-1]) is Cancelled):
        assert time.monotonic() < deadline, seen["gone"][-3:]
        time.sleep(0.01)
    record = seen["gone"]
    assert type(record[-1]) is Cancelled and record[-1].step == "draft"
    assert 3 <= sum(type(e) is Delta for e in record) < 200
