"""Serving the web view with hypercorn's trio worker."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ._app import LOOPBACK, WebRuns, make_app
from ._log import RunLog

__all__ = ("DEFAULT_BIND", "parse_bind", "serve_runs", "serve_run_dirs")

#: Where ``--web`` and ``serve`` listen when given no HOST:PORT (port 0: any free port).
DEFAULT_BIND: Final = "127.0.0.1:8765"


def parse_bind(value: str | None) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``HOST`` -> ``(host, port)``; loopback and 8765 by default.

    Raises:
        ValueError: the port is not a number in 0..65535.
    """
    host, port = DEFAULT_BIND.rsplit(":", 1)
    if value:
        if value.startswith("[") and "]" in value:  # [::1]:8000
            end = value.index("]")
            host, rest = value[1:end], value[end + 1 :]
            port = rest[1:] if rest.startswith(":") else port
        elif value.isdigit():
            port = value
        elif ":" in value and value.count(":") == 1:
            given_host, port = value.split(":")
            host = given_host or host
        else:
            host = value
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return host, number


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches."""
    return host in LOOPBACK or host.startswith("127.")


async def serve_runs(  # noqa: ASYNC128 - hypercorn.trio.serve calls task_status.started(urls)
    runs: WebRuns,
    host: str,
    port: int,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *runs* on ``host:port`` until *shutdown* is set (or cancelled).

    ``task_status.started(urls)`` hands over the bound URLs (port 0 becomes the
    port chosen). Closes the listening sockets and open connections when it returns.
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("sluiceway.web")
    config.graceful_timeout = 1.0
    trigger = (shutdown if shutdown is not None else trio.Event()).wait
    await serve(make_app(runs), config, shutdown_trigger=trigger, task_status=task_status)  # type: ignore[arg-type]


def load_run_dirs(paths: list[str]) -> WebRuns:
    """A ``WebRuns`` of the runs in *paths* (run folders, or folders of run folders).

    Raises:
        ValueError: a path holds no run (neither ``events.jsonl`` nor ``result.json``).
    """
    runs = WebRuns()
    for raw in paths:
        path = Path(raw)
        candidates = [path] if _is_run_dir(path) else sorted(p for p in path.glob("*") if _is_run_dir(p))
        if not candidates:
            raise ValueError(f"{raw}: not a run folder (no result.json or events.jsonl)")
        for run_dir in candidates:
            runs.add(RunLog.from_run_dir(run_dir))
    return runs


def _is_run_dir(path: Path) -> bool:
    return (path / "result.json").is_file() or (path / "events.jsonl").is_file()


async def serve_run_dirs(  # noqa: ASYNC128 - serve_runs (hypercorn) calls task_status.started
    runs: WebRuns, host: str, port: int, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve finished runs until cancelled (Ctrl-C)."""
    runs.token_everywhere = not is_loopback(host)
    await serve_runs(runs, host, port, task_status=task_status)
