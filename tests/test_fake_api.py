"""The fake Messages API server: HTTP/1.1 on the wire, scenarios, counters, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import trio

from sluiceway.testing.fake_api import FakeAPI, parse_scenario


def _complete(resp: bytes) -> bool:
    head, sep, body = resp.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.lower() == b"content-length":
            return len(body) >= int(value)
    return body.endswith(b"0\r\n\r\n")


async def _http(port, requests):
    """Send raw HTTP/1.1 requests on ONE connection, each after the previous response
    ended; return every byte read (a response cut by the server ends the exchange)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    out = bytearray()
    async with stream:
        with trio.fail_after(5):
            for raw in requests:
                await stream.send_all(raw)
                start = len(out)
                while not _complete(bytes(out[start:])):
                    data = await stream.receive_some(65536)
                    if not data:
                        return bytes(out)
                    out += data
    return bytes(out)


def _post(body, headers=""):
    data = json.dumps(body).encode()
    return (
        f"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{headers}"
        f"content-length: {len(data)}\r\n\r\n"
    ).encode() + data


def test_parse_scenario():
    assert parse_scenario("text?deltas=100&delay_ms=5") == (
        "text",
        {"deltas": "100", "delay_ms": "5"},
    )
    assert parse_scenario("") == ("text", {})


async def test_chunked_sse_and_keep_alive(fake_api):
    before = fake_api.stats()
    body = {"model": "fake:text?text=hi there", "max_tokens": 5, "messages": []}
    raw = await _http(
        fake_api.port, [_post(body), _post(body, "x-fake-scenario: text?text=again\r\n")]
    )
    responses = raw.split(b"HTTP/1.1 200 OK\r\n")
    assert len(responses) == 3 and responses[0] == b""
    for resp in responses[1:]:
        head, _, rest = resp.partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head and b"content-type: text/event-stream" in head
        assert rest.endswith(b"0\r\n\r\n")
    assert b'"text":"hi "' in responses[1] and b'"text":"there"' in responses[1]
    assert b'"text":"again"' in responses[2]
    # the server counts a stream completed just after its last byte: wait for it
    assert await trio.to_thread.run_sync(
        fake_api.wait_for, "completed", before["completed"] + 2, 2.0
    )
    after = fake_api.stats()
    assert after["connections"] - before["connections"] == 1
    assert after["completed"] - before["completed"] == 2
    assert after["by_scenario"]["text"] - before["by_scenario"].get("text", 0) == 2


async def test_status_404_and_unknown_scenario(fake_api):
    raw = await _http(fake_api.port, [b"GET /nope HTTP/1.1\r\nhost: x\r\n\r\n"])
    assert raw.startswith(b"HTTP/1.1 404 Not Found\r\n")
    raw = await _http(fake_api.port, [_post({"model": "fake:text?deltas=many"})])
    assert raw.startswith(b"HTTP/1.1 400 ") and b"deltas='many' is not a number" in raw
    raw = await _http(fake_api.port, [_post({"model": "fake:bogus"})])
    assert raw.startswith(b"HTTP/1.1 400 ") and b"unknown fake scenario 'bogus'" in raw
    raw = await _http(fake_api.port, [_post({"model": "fake:status?code=429&retry_after=9"})])
    assert (
        raw.startswith(b"HTTP/1.1 429 ")
        and b"retry-after: 9\r\n" in raw
        and b"rate_limit_error" in raw
    )


async def test_stats_endpoint_and_retry_counter(fake_api):
    before = fake_api.stats()["retries"]
    await _http(fake_api.port, [_post({"model": "fake:text"}, "x-stainless-retry-count: 1\r\n")])
    raw = await _http(fake_api.port, [b"GET /stats HTTP/1.1\r\nhost: x\r\n\r\n"])
    stats = json.loads(raw.partition(b"\r\n\r\n")[2])
    assert stats["retries"] == before + 1 == fake_api.stats()["retries"]


async def test_client_leaving_mid_stream_is_a_disconnect(fake_api):
    before = fake_api.stats()
    stream = await trio.open_tcp_stream("127.0.0.1", fake_api.port)
    await stream.send_all(_post({"model": "fake:slow?delay_ms=1000&first_delay_ms=0&deltas=5"}))
    data = b""
    while b"text_delta" not in data:
        data += await stream.receive_some(65536)
    await stream.aclose()
    assert await trio.to_thread.run_sync(
        fake_api.wait_for, "disconnects", before["disconnects"] + 1, 2.0
    )
    assert fake_api.stats()["completed"] == before["completed"]


async def test_serve_inside_trio():
    api = FakeAPI(scenario="text?text=inside")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(api.serve)
        raw = await _http(port, [_post({"model": "claude-haiku-4-5"})])
        nursery.cancel_scope.cancel()
    assert b'"text":"inside"' in raw and b'"model":"claude-haiku-4-5"' in raw
    assert api.stats()["requests"] == 1


def test_start_stop_is_idempotent():
    api = FakeAPI()
    port = api.start()
    assert api.start() == port and api.url == f"http://127.0.0.1:{port}"
    api.stop()
    api.stop()


def test_cli_prints_the_url_and_serves():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sluiceway.testing.fake_api",
            "--port",
            "0",
            "--scenario",
            "text?text=cli",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("fake Messages API on http://127.0.0.1:")
        port = int(line.split("127.0.0.1:")[1].split()[0])
        raw = trio.run(_http, port, [_post({"model": "m"})])
        assert b'"text":"cli"' in raw
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


@pytest.mark.parametrize(
    "scenario",
    [
        "text",
        "slow?delay_ms=1",
        "pings",
        "thinking",
        "tool_use",
        "error",
        "drop",
        "stall?stall_s=0.05&ping_ms=10",
    ],
)
async def test_every_scenario_is_well_formed_sse(fake_api, scenario):
    raw = await _http(fake_api.port, [_post({"model": f"fake:{scenario}"})])
    _, _, body = raw.partition(b"\r\n\r\n")
    payload = bytearray()
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        payload += body[:size]
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]
    events = [block for block in payload.decode().split("\n\n") if block]
    names = [e.split("\n")[0].removeprefix("event: ") for e in events]
    assert names[0] == "message_start"
    for e in events:
        json.loads(e.split("\n")[1].removeprefix("data: "))
    name = scenario.split("?")[0]
    if name in ("text", "slow", "pings", "thinking", "tool_use"):
        assert names[-2:] == ["message_delta", "message_stop"]
    if name == "error":
        assert names[-1] == "error"
    if name in ("drop", "stall"):
        assert "message_stop" not in names
    if name == "pings":
        assert names.count("ping") == names.count("content_block_delta")


async def test_tool_use_ids_are_unique_per_request_and_match_the_request_id(fake_api):
    body = {"model": "fake:tool_use?pieces=2", "max_tokens": 5, "messages": []}
    raw = await _http(fake_api.port, [_post(body), _post(body), _post(body)])
    responses = raw.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(responses) == 3
    ids = []
    for resp in responses:
        head, _, rest = resp.partition(b"\r\n\r\n")
        (request_id,) = [line for line in head.split(b"\r\n") if line.startswith(b"request-id: ")]
        number = request_id.removeprefix(b"request-id: req_fake_").decode()
        (tool_id,) = {m.decode() for m in re.findall(rb'"id":"(toolu_[^"]*)"', rest)}
        assert tool_id == f"toolu_fake_{number}"
        ids.append(tool_id)
    assert len(set(ids)) == 3
    # consecutive requests on one server: consecutive numbers
    numbers = [int(i.removeprefix("toolu_fake_")) for i in ids]
    assert numbers == list(range(numbers[0], numbers[0] + 3))
