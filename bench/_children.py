"""The processes the bench runs: the fake server, and one child per concurrency or backpressure run.

A child is ``python -m bench --child <json>``: its settings as one JSON argument
(``_settings.child_json``); it prints its figures as the last line of stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._settings import ChildSettings, child_json

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
#: Seconds a child may take before the bench gives up on it.
CHILD_TIMEOUT = 240.0


class Server:
    """The fake API in a child process (see ``bench/_server.py``)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PY, str(BENCH / "_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("the fake API server did not start")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def report(self) -> dict[str, Any]:
        """The server's CPU seconds so far (``cpu_s``), its counters (``stats``), its pacing (``late_ms``)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Stop the server (closes its stdin) and wait for it."""
        if self.proc.poll() is None:
            self.proc.communicate("", timeout=30)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        except Exception:
            self.proc.kill()
            self.proc.wait()


def start_child(settings: ChildSettings) -> subprocess.Popen[str]:
    """Start a child running *settings* (``finish_child`` collects it)."""
    return subprocess.Popen(
        [PY, "-m", "bench", "--child", child_json(settings)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish_child(proc: subprocess.Popen[str], timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
    """Wait for *proc*; its figures (the last line of its stdout). A failed child raises."""
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {proc.args!r} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_child(settings: ChildSettings, timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
    """Run a child for *settings* to the end; its figures."""
    return finish_child(start_child(settings), timeout)
