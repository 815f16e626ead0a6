"""The web view's HTTP side: a Starlette app over a set of ``RunLog``s.

Routes: ``GET /`` (the page), ``GET /runs`` (the runs, as JSON),
``GET /runs/{id}/events`` (server-sent events; ``id`` is the event's index in
the run; ``Last-Event-ID``, or ``?last_event_id=``, resumes after it; the
stream ends with ``event: end``) and ``POST /runs/{id}/cancel`` (needs the
token, always). Bound to anything but loopback, every request needs the token
(``?token=``, or the ``X-Sluiceway-Token`` header).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import Any, Final

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ._log import FRAME_BATCH, RunLog, frames

__all__ = ("LOOPBACK", "TOKEN_HEADER", "WebRuns", "make_app")

#: Hosts that reach only this machine: the view binds one of these unless told otherwise.
LOOPBACK: Final = frozenset(("127.0.0.1", "localhost", "::1"))
#: The header a request may carry the token in (EventSource cannot set headers: ``?token=`` too).
TOKEN_HEADER: Final = "X-Sluiceway-Token"
#: Seconds between SSE comment pings, so proxies and browsers keep an idle stream open.
PING_INTERVAL: Final = 15.0


class WebRuns:
    """The runs a web view serves, and its access token."""

    def __init__(self, *, token: str | None = None, token_everywhere: bool = False) -> None:
        self.token = token or secrets.token_urlsafe(16)
        """Printed on the console; needed to cancel, and for every request off loopback."""
        self.token_everywhere = token_everywhere
        """True when bound off loopback: every request must carry the token."""
        self.logs: dict[str, RunLog] = {}
        """Run id -> its log, in the order added."""

    def add(self, log: RunLog) -> None:
        """Serve *log* (under its run id)."""
        self.logs[log.run_id] = log

    @property
    def clients(self) -> int:
        """SSE clients connected now, over every run."""
        return sum(log.clients for log in self.logs.values())

    def allows(self, request: Request) -> bool:
        """True when *request* carries the token."""
        given = request.query_params.get("token") or request.headers.get(TOKEN_HEADER) or ""
        return secrets.compare_digest(given.encode(), self.token.encode())


def _page() -> str:
    return resources.files(__package__).joinpath("_page.html").read_text(encoding="utf-8")


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or ""
    try:
        return int(raw)
    except ValueError:
        return -1


async def _stream(log: RunLog, after: int) -> AsyncIterator[Mapping[str, Any] | dict[str, Any]]:
    """The SSE messages of *log* after id *after*, then ``end``; at the client's own pace."""
    log.client_joined()
    try:
        next_index = after + 1
        while True:
            if next_index < len(log.events):
                batch = log.events[next_index : next_index + FRAME_BATCH]
                for index, data in frames(batch, next_index):
                    yield {"id": str(index), "event": "event", "data": json.dumps(data, default=str)}
                next_index += len(batch)
            elif log.finished:
                yield {"event": "end", "data": json.dumps({"status": log.status, "events": len(log.events)})}
                return
            else:
                await log.wait_beyond(next_index - 1)
    finally:
        log.client_left()


def make_app(runs: WebRuns) -> Starlette:
    """The Starlette app serving *runs*."""

    def denied(request: Request) -> Response | None:
        if runs.token_everywhere and not runs.allows(request):
            return JSONResponse({"error": "this view needs its token (?token=...)"}, status_code=403)
        return None

    async def page(request: Request) -> Response:
        return denied(request) or HTMLResponse(_page())

    async def list_runs(request: Request) -> Response:
        return denied(request) or JSONResponse(
            [
                {
                    "id": log.run_id,
                    "pipeline": log.pipeline,
                    "status": log.status,
                    "events": len(log.events),
                    "live": log.cancel is not None,
                }
                for log in runs.logs.values()
            ]
        )

    async def events(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused
        log = runs.logs.get(request.path_params["run_id"])
        if log is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        return EventSourceResponse(
            _stream(log, _last_event_id(request)), ping=PING_INTERVAL, headers={"Cache-Control": "no-store"}
        )

    async def cancel(request: Request) -> Response:
        if not runs.allows(request):
            return JSONResponse({"error": "cancelling needs the token printed on the console"}, status_code=403)
        log = runs.logs.get(request.path_params["run_id"])
        if log is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        if log.cancel is None:
            return JSONResponse({"error": "the run is not running"}, status_code=409)
        log.cancel()
        return JSONResponse({"cancelled": log.run_id}, status_code=202)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/runs", list_runs),
            Route("/runs/{run_id}/events", events),
            Route("/runs/{run_id}/cancel", cancel, methods=["POST"]),
        ]
    )
