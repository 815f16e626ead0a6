"""``sluiceway serve RUN_DIR...``, and the web side of ``sluiceway run --web``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final, TextIO

import trio

__all__ = ("WebSession", "serve_command", "web_available")

#: Seconds a finished run waits for connected browsers to receive ``end`` before the server stops.
END_GRACE: Final = 3.0
#: Events the run's stream holds for the web log's task (which only appends: it keeps up).
WEB_EVENTS_BUFFER: Final = 1024


def web_available() -> str | None:
    """``None`` when the web extra is installed, else the message saying how to get it."""
    try:
        import hypercorn.trio  # noqa: F401
        import sse_starlette  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as exc:
        return f"the web view needs the web extra: pip install 'sluiceway[web]' ({exc})"
    return None


def serve_command(args: argparse.Namespace) -> int:
    """Serve the runs in ``args.run_dirs`` until Ctrl-C; return the exit code."""
    err: TextIO = sys.stderr
    missing = web_available()
    if missing:
        print(f"sluiceway serve: {missing}", file=err)
        return 2
    from ._web._serve import load_run_dirs, parse_bind, serve_run_dirs

    try:
        host, port = parse_bind(args.bind)
        runs = load_run_dirs(args.run_dirs)
    except (OSError, ValueError) as exc:
        print(f"sluiceway serve: {exc}", file=err)
        return 2

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(serve_run_dirs, runs, host, port)
            suffix = f"?token={runs.token}" if runs.token_everywhere else ""
            print(f"sluiceway serve: {len(runs.logs)} run(s) at {urls[0]}/{suffix}  (Ctrl-C stops)", file=err, flush=True)

    try:
        trio.run(main)
    except KeyboardInterrupt:
        return 0
    return 0


class WebSession:
    """The web view of one ``sluiceway run --web``: its server, the run's log, and the cancel hook."""

    def __init__(self, bind: str, run_id: str, *, linger: float = 0.0, err: TextIO) -> None:
        from ._web._app import WebRuns
        from ._web._log import RunLog
        from ._web._serve import is_loopback, parse_bind

        self.host, self.port = parse_bind(bind)
        self.runs = WebRuns(token_everywhere=not is_loopback(self.host))
        self.log = RunLog(run_id)
        self.runs.add(self.log)
        self.linger = linger
        self.err = err
        self.shutdown = trio.Event()
        self.url = ""

    async def start(self, nursery: trio.Nursery, cancel: Any) -> trio.MemorySendChannel[Any]:
        """Start the server and the log's task in *nursery*; return the channel the run sends to."""
        from ._web._log import log_actor
        from ._web._serve import serve_runs

        urls = await nursery.start(lambda task_status: serve_runs(
            self.runs, self.host, self.port, shutdown=self.shutdown, task_status=task_status
        ))
        self.url = f"{urls[0]}/?token={self.runs.token}"
        print(f"sluiceway web: {self.url}", file=self.err, flush=True)
        print(f"sluiceway web: token {self.runs.token} (the Cancel button needs it)", file=self.err, flush=True)
        self.log.cancel = cancel
        send, receive = trio.open_memory_channel[Any](WEB_EVENTS_BUFFER)
        nursery.start_soon(log_actor, receive, self.log)
        return send

    async def finish(self, run_dir: Path | None, linger_scope: trio.CancelScope) -> None:
        """After the run: write ``events.jsonl``, linger, let browsers get ``end``, stop the server."""
        from ._web._log import EVENTS_FILE

        with trio.move_on_after(END_GRACE):
            await self.log.wait_finished()
        if run_dir is not None:
            try:
                self.log.write_jsonl(run_dir / EVENTS_FILE)
            except OSError as exc:
                print(f"sluiceway web: cannot write {EVENTS_FILE}: {exc}", file=self.err)
        with linger_scope:
            if self.linger > 0:
                print(f"sluiceway web: serving for {self.linger:g} s more (Ctrl-C stops)", file=self.err, flush=True)
                await trio.sleep(self.linger)
            with trio.move_on_after(END_GRACE):
                await self.log.wait_no_clients()
        self.shutdown.set()
