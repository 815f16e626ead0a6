"""A fake Anthropic Messages API server for offline tests and demos.

A real HTTP/1.1 server on 127.0.0.1 (keep-alive, chunked ``text/event-stream``)
written on trio. ``POST /v1/messages`` answers with a scripted stream; ``GET
/stats`` returns the counters as JSON. Point the SDK (or sluiceway's live
mode) at it with ``ANTHROPIC_BASE_URL=http://127.0.0.1:PORT``; any API key works.

Choosing a scenario, per request:

- the next of the scenarios queued with ``FakeAPI.script(...)`` (a conversation of
  several calls: a tool turn, a failure, the retry), while any are left;
- the ``x-fake-scenario`` header, e.g. ``x-fake-scenario: text?deltas=100&delay_ms=50``;
- else a model name ``fake:SCENARIO?PARAMS``, e.g. ``model: "fake:tool_use?pieces=2000"``;
- else the server's default scenario (``text``).

Scenarios:

=============  ==============================================================
``text``       a text block: ``text=`` (split into words), or ``deltas=N``
               deltas ``"tok0 "``, ``"tok1 "``..., or with ``echo=1`` the
               request's last user message (split into words)
``slow``       ``text`` with ``delay_ms=100`` unless given
``pings``      ``text`` with a ``ping`` before every delta
``thinking``   a thinking block (deltas + ``signature_delta``), then text
``tool_use``   a short text block, then a ``tool_use`` block (``tool=``,
               id ``toolu_fake_<n>``, n the server's request number as in
               the ``request-id`` header ``req_fake_<n>``, so every call's
               tool id is unique) whose input JSON (``input=`` a JSON object,
               else a made-up one) arrives in ``pieces=N``
               ``input_json_delta`` pieces (default 4); stop reason ``tool_use``
``tool_loop``  a tool-use loop: a request whose last message holds tool results
               gets a text block ``"tool said: <results>"``; any other a
               ``tool_use`` block of ``tool=`` (else the tool ``tool_choice``
               forces) with input ``input=`` (JSON, default ``{}``) in
               ``pieces=N`` pieces, stop reason ``tool_use``
``echo``       a text block ``"echo: <the last user message's text>"``, word by
               word: each prompt gets its own answer, whatever order the
               requests arrive in
``error``      ``after=K`` text deltas (default 2), then ``event: error`` of
               ``type=`` (default ``overloaded_error``), then a clean end
``drop``       ``after=K`` text deltas, then the connection is cut mid-body
``stall``      ``after=K`` text deltas, then only pings every ``ping_ms``
               (default 100) until the client leaves (at most ``stall_s``=60 s)
``status``     HTTP ``code=`` (401, 403, 429, 500, 529...) with an API error
               body; ``retry_after=`` seconds as a ``retry-after`` header
               (default 2 for 429 and 529)
=============  ==============================================================

Common parameters: ``head_delay_ms`` (before the response head, as a real
API's time to answer), ``delay_ms`` (between deltas), ``first_delay_ms`` (before
the first delta), ``input_tokens`` (25), ``cache_read``, ``cache_write`` (0),
``reply_model`` (the model reported in ``message_start``; default: the
request's model, or ``claude-sonnet-4-5-20250929`` for ``fake:`` models).
Output tokens are counted as one per delta (text, thinking, tool piece), and
reported cumulatively in ``message_delta``. Every response has a
``request-id`` header ``req_fake_<n>``.

Counters (``FakeAPI.stats()``): ``requests``, ``by_scenario``, ``completed``
(streams written to the end), ``disconnects`` (the client closed before the
stream ended), ``status_errors``, ``retries`` (requests with a non-zero
``x-stainless-retry-count``), ``connections``.

Run it by hand: ``python -m sluiceway.testing.fake_api --port 8765
[--scenario "slow?delay_ms=200"]``.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import trio

__all__ = ("FakeAPI", "parse_scenario")

#: Bytes of SSE buffered before a send when there is no delay to honour.
_SEND_BATCH: int = 64 * 1024
#: Largest request head or body we accept.
_MAX_REQUEST: int = 8 * 1024 * 1024
_DEFAULT_WORDS = "Hello! This is the sluiceway fake Messages API, streaming word by word."
_STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    529: "Overloaded",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def parse_scenario(text: str) -> tuple[str, dict[str, str]]:
    """Split ``"name?a=1&b=2"`` into ``("name", {"a": "1", "b": "2"})``."""
    name, _, query = text.partition("?")
    return (name.strip() or "text"), dict(parse_qsl(query, keep_blank_values=True))


class _Request:
    __slots__ = ("body", "headers", "method", "path")

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


class _Drop(Exception):
    """Cut the connection now (the ``drop`` scenario)."""


class FakeAPI:
    """The fake server. Use from sync code (``start``/``stop``, a background
    thread running ``trio.run``) or from trio (``await nursery.start(api.serve)``).

    Args:
        port: The port to bind on 127.0.0.1; 0 picks a free one.
        scenario: The default scenario (``"name?params"``) for requests that name none.
    """

    def __init__(self, *, port: int = 0, scenario: str = "text") -> None:
        self.port = port
        self.default_scenario = scenario
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._seq = 0
        self.disconnect_times: collections.deque[float] = collections.deque(maxlen=1000)
        """``time.monotonic()`` of each disconnect seen mid-stream (most recent last)."""
        self.requests_seen: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        """The last requests: ``{"headers": ..., "body": ...}`` (body parsed as JSON)."""
        self._script: collections.deque[str] = collections.deque()
        self.reset()

    def script(self, *scenarios: str) -> None:
        """Answer the next requests with *scenarios* (``"name?params"``), one each, in order.

        They come before a request's own choice (header, ``fake:`` model or the
        default), which applies again once they are used up; ``reset`` drops those left.
        """
        with self._lock:
            self._script.extend(scenarios)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765``."""
        return f"http://127.0.0.1:{self.port}"

    # -- counters ---------------------------------------------------------

    def reset(self) -> None:
        """Zero the counters."""
        with self._lock:
            self._stats: dict[str, Any] = {
                "requests": 0,
                "by_scenario": {},
                "completed": 0,
                "disconnects": 0,
                "status_errors": 0,
                "retries": 0,
                "connections": 0,
            }
            self.disconnect_times.clear()
            self.requests_seen.clear()
            self._script.clear()
            self._changed.notify_all()

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters."""
        with self._lock:
            snap = dict(self._stats)
            snap["by_scenario"] = dict(self._stats["by_scenario"])
            return snap

    def wait_for(self, counter: str, value: int, timeout: float = 5.0) -> bool:
        """Block (a thread) until ``stats()[counter] >= value``; ``False`` on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._stats[counter] >= value, timeout)

    def _count(self, counter: str, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._stats[counter] += 1
            else:
                table = self._stats[counter]
                table[key] = table.get(key, 0) + 1
            if counter == "disconnects":
                self.disconnect_times.append(time.monotonic())
            self._changed.notify_all()

    # -- lifecycle --------------------------------------------------------

    def start(self) -> int:
        """Serve in a background thread; return the bound port once listening."""
        if self._thread is not None:
            return self.port
        self._started.clear()
        self._thread = threading.Thread(target=self._thread_main, name="fake-api", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise RuntimeError("fake API server failed to start") from self._error
        return self.port

    def stop(self) -> None:
        """Stop the background server and join its thread (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._token is not None and self._scope is not None:
            try:
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        thread.join(10)

    def __enter__(self) -> FakeAPI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        # outside trio.run (no Cancelled here): report to start(), never die silently
        except BaseException as exc:  # noqa: ASYNC103
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            await nursery.start(self.serve)
            self._started.set()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(port)`` once listening."""
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle_connection, listeners)
            task_status.started(self.port)

    # -- HTTP ---------------------------------------------------------------

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        self._count("connections")
        buf = bytearray()
        try:
            while True:
                request = await _read_request(stream, buf)
                if request is None:
                    return
                if not await self._respond(stream, request, buf):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _respond(self, stream: trio.SocketStream, request: _Request, buf: bytearray) -> bool:
        """Answer one request; return whether the connection may be reused."""
        if request.method == "GET" and request.path.startswith("/stats"):
            await _send_json(stream, 200, self.stats(), {})
            return True
        if request.method != "POST" or not request.path.split("?")[0].endswith("/v1/messages"):
            await _send_json(stream, 404, _error_body(404, "not found"), {})
            return True
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            await _send_json(stream, 400, _error_body(400, "body is not JSON"), {})
            return True
        model = str(body.get("model", ""))
        chosen = request.headers.get("x-fake-scenario")
        if chosen is None and model.startswith("fake:"):
            chosen = model[5:]
        with self._lock:
            if self._script:
                chosen = self._script.popleft()
        name, params = parse_scenario(chosen or self.default_scenario)
        with self._lock:
            self._seq += 1
            seq = self._seq
            self.requests_seen.append({"headers": dict(request.headers), "body": body})
        self._count("requests")
        self._count("by_scenario", name)
        if request.headers.get("x-stainless-retry-count", "0") not in ("", "0"):
            self._count("retries")
        headers = {"request-id": f"req_fake_{seq}"}
        bad = _check_params(params)
        if bad:
            await _send_json(stream, 400, _error_body(400, bad), headers)
            return True
        if "head_delay_ms" in params:
            await trio.sleep(_int(params, "head_delay_ms", 0) / 1000)
        if name == "status":
            code = int(params.get("code", "500"))
            if "retry_after" in params or code in (429, 529):
                headers["retry-after"] = params.get("retry_after", "2")
            self._count("status_errors")
            await _send_json(stream, code, _error_body(code, f"fake status {code}"), headers)
            return True
        if name not in _SCENARIOS:
            await _send_json(
                stream, 400, _error_body(400, f"unknown fake scenario {name!r}"), headers
            )
            return True
        if not model.startswith("fake:") and model:
            params.setdefault("reply_model", model)
        params[_REQUEST] = str(seq)  # ids unique per request (tool_use ids: ``toolu_fake_<seq>``)
        if name in ("tool_loop", "echo"):
            params[_BODY] = json.dumps(body)
        if params.get("echo") and "text" not in params:
            params["text"] = _last_user_text(body)
        return await self._stream_sse(stream, name, params, headers, buf)

    async def _stream_sse(
        self,
        stream: trio.SocketStream,
        name: str,
        params: dict[str, str],
        headers: dict[str, str],
        buf: bytearray,
    ) -> bool:
        head = response_head(200, "text/event-stream; charset=utf-8", headers, chunked=True)
        await stream.send_all(head)
        gone = False
        finished = False

        async def watch(cancel: trio.CancelScope) -> None:
            # the client sends nothing while it reads a response: data or EOF here means it left
            nonlocal gone
            try:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    buf.extend(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            gone = True
            cancel.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            try:
                await _write_events(stream, _SCENARIOS[name](params), params)
                await stream.send_all(b"0\r\n\r\n")
                finished = True
            except trio.BrokenResourceError:
                gone = True
            except _Drop:
                pass  # the scenario cuts the connection: not the client's doing
            nursery.cancel_scope.cancel()
        if finished:
            self._count("completed")
            return True
        if gone:
            self._count("disconnects")
        return False


async def _read_request(stream: trio.SocketStream, buf: bytearray) -> _Request | None:
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > _MAX_REQUEST:
            raise ValueError("request head too large")
        data = await stream.receive_some(65536)
        if not data:
            return None
        buf.extend(data)
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[: end + 4]
    method, path, _ = head[0].split(" ", 2)
    headers = {}
    for line in head[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length > _MAX_REQUEST:
        raise ValueError("request body too large")
    while len(buf) < length:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buf.extend(data)
    body = bytes(buf[:length])
    del buf[:length]
    return _Request(method, path, headers, body)


def response_head(
    code: int,
    content_type: str,
    headers: dict[str, str],
    *,
    chunked: bool = False,
    length: int | None = None,
) -> bytes:
    """The status line and headers of a response: chunked SSE, or a body of *length* bytes."""
    lines = [f"HTTP/1.1 {code} {_STATUS_TEXT.get(code, 'Error')}", f"content-type: {content_type}"]
    if chunked:
        lines += ["cache-control: no-cache", "transfer-encoding: chunked"]
    if length is not None:
        lines.append(f"content-length: {length}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _send_json(
    stream: trio.SocketStream, code: int, payload: Any, headers: dict[str, str]
) -> None:
    body = json.dumps(payload).encode()
    head = response_head(code, "application/json", headers, length=len(body))
    await stream.send_all(head + body)


def _error_body(code: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(code, "api_error" if code >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


# -- scenarios: generators of ("event", payload) / ("sleep", seconds) / ("drop", None)


async def _write_events(
    stream: trio.SocketStream, script: Iterator[tuple[str, Any]], params: dict[str, str]
) -> None:
    # events that are ready together go out as one HTTP chunk, as a busy server's would
    out = bytearray()

    async def flush() -> None:
        if out:
            await stream.send_all(b"%x\r\n%s\r\n" % (len(out), bytes(out)))
            out.clear()

    for kind, value in script:
        if kind == "event":
            name, payload = value
            out += f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()
            if len(out) >= _SEND_BATCH:
                await flush()
        elif kind == "sleep":
            await flush()
            await trio.sleep(value)
        elif kind == "drop":
            await flush()
            raise _Drop
    await flush()


_INT_PARAMS = (
    "deltas", "head_delay_ms", "delay_ms", "first_delay_ms", "input_tokens", "cache_read", "cache_write",
    "pieces", "after", "ping_ms", "code",
)  # fmt: skip


#: The parameter the server sets to the request's number (1, 2, ... per server; as in
#: the ``request-id: req_fake_<n>`` header), read by scenarios that need a unique id.
_REQUEST = "_request"
# the request body, for the scenarios that answer what was asked (tool_loop)
_BODY = "_body"


def _check_params(params: dict[str, str]) -> str | None:
    """Return what is wrong with the scenario's numeric parameters, if anything."""
    try:
        for key in _INT_PARAMS:
            if key in params:
                int(params[key])
        for key in ("stall_s", "retry_after"):
            if key in params:
                float(params[key])
    except ValueError:
        return f"fake scenario parameter {key}={params[key]!r} is not a number"
    return None


def _last_user_text(body: dict[str, Any]) -> str:
    """The text of the request's last user message (``echo=1``)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(b.get("text", "") for b in content or [] if isinstance(b, dict))
    return ""


def _int(params: dict[str, str], key: str, default: int) -> int:
    return int(params.get(key, default))


def _pieces(params: dict[str, str]) -> list[str]:
    if "deltas" in params:
        return [f"tok{i} " for i in range(_int(params, "deltas", 0))]
    text = params.get("text", _DEFAULT_WORDS)
    words = text.split(" ")
    return (
        [w + " " for w in words[:-1]] + [words[-1]] if words[-1] else [w + " " for w in words[:-1]]
    )


class _Script:
    """Builds one message's events; counts output tokens as one per delta."""

    def __init__(self, params: dict[str, str]) -> None:
        self.params = params
        self.delay = _int(params, "delay_ms", 0) / 1000
        self.first_delay = _int(params, "first_delay_ms", _int(params, "delay_ms", 0)) / 1000
        self.pings = params.get("pings") == "1"
        self.out = 0
        self.index = -1

    def start(self) -> Iterator[tuple[str, Any]]:
        p = self.params
        usage = {
            "input_tokens": _int(p, "input_tokens", 25),
            "output_tokens": 1,
            "cache_creation_input_tokens": _int(p, "cache_write", 0),
            "cache_read_input_tokens": _int(p, "cache_read", 0),
        }
        message: dict[str, Any] = {
            "id": "msg_fake_01",
            "type": "message",
            "role": "assistant",
            "model": p.get("reply_model", "claude-sonnet-4-5-20250929"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        yield "event", ("message_start", {"type": "message_start", "message": message})

    def delta(self, index: int, delta: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        delay = self.first_delay if self.out == 0 else self.delay
        if delay:
            yield "sleep", delay
        if self.pings:
            yield "event", ("ping", {"type": "ping"})
        self.out += 1
        yield (
            "event",
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            ),
        )

    def block(self, block: dict[str, Any]) -> tuple[str, Any]:
        self.index += 1
        return "event", (
            "content_block_start",
            {"type": "content_block_start", "index": self.index, "content_block": block},
        )

    def stop_block(self) -> tuple[str, Any]:
        return "event", ("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def text_block(self, pieces: list[str]) -> Iterator[tuple[str, Any]]:
        yield self.block({"type": "text", "text": ""})
        for piece in pieces:
            yield from self.delta(self.index, {"type": "text_delta", "text": piece})
        yield self.stop_block()

    def end(self, stop_reason: str = "end_turn") -> Iterator[tuple[str, Any]]:
        yield (
            "event",
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": self.out},
                },
            ),
        )
        yield "event", ("message_stop", {"type": "message_stop"})


def _text(params: dict[str, str]) -> Iterator[tuple[str, Any]]:
    s = _Script(params)
    yield from s.start()
    yield from s.text_block(_pieces(params))
    yield from s.end(params.get("stop_reason", "end_turn"))


def _slow(params: dict[str, str]) -> Iterator[tuple[str, Any]]:
    params.setdefault("delay_ms", "100")
    return _text(params)


def _pings(params: dict[str, str]) -> Iterator[tuple[str, Any]]:
    params.setdefault("pings", "1")
    return _text(params)


def _thinking(params: dict[str, str]) -> Iterator[tuple[str, Any]]:
    s = _Script(params)
    yield from s.start()
    yield s.block({"type": "thinking", "thinking": "", "signature": ""})
    for piece in params.get("thinking", "Let me think about this step by step.").split(" "):
        yield from s.delta(s.index, {"type": "thinking_delta", "thinking": piece + " "})
    yield (
        "event",
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": s.index,
                "delta": {"type": "signature_delta", "signature": "sig_fake_01"},
            },
        ),
    )
    yield s.stop_block()
    yield from s.text_block(_pieces(params))
    yield from s.end()


def _tool_use(params: dict[str, str]) -> Iterator[tuple[str, Any]]:
    s = _Script(params)
    n = max(1, _int(params, "pieces", 4))
    yield from s.start()
    yield from s.text_block(["Let me ", "check."])
    yield s.block(
        {
            "type": "tool_use",
            "id": f"toolu_fake_{params.get(_REQUEST, '1')}",
            "name": params.get("tool", "get_weather"),
            "input": {},
        }
    )
    raw = params.get("input") or json.dumps({"city": "Paris", "data": "abcdefgh" * n}, separators=(",", ":"))
    size = -(-len(raw) // n)
    for i in range(n):
        yield from s.delta(
            s.index, {"type": "input_json_delta", "partial_json": raw[i * size : (i + 1) * size]}
        )
    yield s.stop_block()
    yield from s.end("tool_use")


def _tool_loop(params: dict[str, str]) -> Iterator[tuple[str, Any]]:
    body = json.loads(params.get(_BODY, "{}"))
    messages = body.get("messages") or [{}]
    last = messages[-1].get("content")
    results = [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"] if isinstance(last, list) else []
    s = _Script(params)
    yield from s.start()
    if results:
        said = "; ".join(str(b.get("content", "")) for b in results)
        yield from s.text_block([w + " " for w in f"tool said: {said}".split(" ")])
        yield from s.end("end_turn")
        return
    choice = body.get("tool_choice") or {}
    name = params.get("tool") or choice.get("name") or "get_weather"
    yield s.block({"type": "tool_use", "id": f"toolu_fake_{params.get(_REQUEST, '1')}", "name": name, "input": {}})
    raw = json.dumps(json.loads(params.get("input", "{}")), separators=(",", ":"))
    n = max(1, min(_int(params, "pieces", 4), len(raw)))
    size = -(-len(raw) // n)
    for i in range(0, len(raw), size):
        yield from s.delta(s.index, {"type": "input_json_delta", "partial_json": raw[i : i + size]})
    yield s.stop_block()
    yield from s.end("tool_use")


def _echo(params: dict[str, str]) -> Iterator[tuple[str, Any]]:
    body = json.loads(params.get(_BODY, "{}"))
    users = [m for m in body.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content", "") if users else ""
    if isinstance(content, list):
        content = "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    s = _Script(params)
    yield from s.start()
    words = f"echo: {content}".split(" ")
    yield from s.text_block([w + " " for w in words[:-1]] + ([words[-1]] if words[-1] else []))
    yield from s.end("end_turn")


def _partial(params: dict[str, str]) -> tuple[_Script, list[str]]:
    s = _Script(params)
    pieces = _pieces(params)[: _int(params, "after", 2)]
    return s, pieces


def _error(params: dict[str, str]) -> Iterator[tuple[str, Any]]:
    s, pieces = _partial(params)
    yield from s.start()
    yield s.block({"type": "text", "text": ""})
    for piece in pieces:
        yield from s.delta(0, {"type": "text_delta", "text": piece})
    kind = params.get("type", "overloaded_error")
    yield "event", ("error", {"type": "error", "error": {"type": kind, "message": f"fake {kind}"}})


def _drop(params: dict[str, str]) -> Iterator[tuple[str, Any]]:
    s, pieces = _partial(params)
    yield from s.start()
    yield s.block({"type": "text", "text": ""})
    for piece in pieces:
        yield from s.delta(0, {"type": "text_delta", "text": piece})
    yield "drop", None


def _stall(params: dict[str, str]) -> Iterator[tuple[str, Any]]:
    s, pieces = _partial(params)
    yield from s.start()
    yield s.block({"type": "text", "text": ""})
    for piece in pieces:
        yield from s.delta(0, {"type": "text_delta", "text": piece})
    ping = _int(params, "ping_ms", 100) / 1000
    for _ in range(int(float(params.get("stall_s", "60")) / max(ping, 0.001))):
        yield "sleep", ping
        yield "event", ("ping", {"type": "ping"})
    yield "drop", None


_SCENARIOS = {
    "text": _text,
    "slow": _slow,
    "pings": _pings,
    "thinking": _thinking,
    "tool_use": _tool_use,
    "tool_loop": _tool_loop,
    "echo": _echo,
    "error": _error,
    "drop": _drop,
    "stall": _stall,
}


def main(argv: list[str] | None = None) -> None:
    """``python -m sluiceway.testing.fake_api --port N [--scenario S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m sluiceway.testing.fake_api", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)"
    )
    parser.add_argument(
        "--scenario", default="text", help='default scenario, e.g. "slow?delay_ms=200"'
    )
    args = parser.parse_args(argv)
    api = FakeAPI(port=args.port, scenario=args.scenario)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(api.serve)
            print(
                f"fake Messages API on http://127.0.0.1:{port} (default scenario {args.scenario!r}); Ctrl-C stops",
                flush=True,
            )
            print(f"  ANTHROPIC_BASE_URL=http://127.0.0.1:{port} ANTHROPIC_API_KEY=x", flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
