"""Capture the console view of a 20-task batch, as a terminal shows it: docs/console_batch.txt.

Runs ``sluiceway run examples/batch_progress.yaml`` in a pseudo-terminal (100
columns), keeps what it writes with the time each piece arrived, and replays
it through a tiny terminal model (text, newline, carriage return, cursor up,
erase line; colors dropped) to take snapshots of the screen while the batch
runs and at its end.

    python docs/capture_console.py            # rewrites docs/console_batch.txt
"""

from __future__ import annotations

import os
import pty
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS, ROWS = 100, 40
#: Escape sequences: CSI (colors, cursor moves, erasing, cursor visibility).
CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


class Screen:
    """Enough of a terminal for rich's live output: lines, a cursor, up, erase line."""

    def __init__(self) -> None:
        self.lines: list[str] = [""]
        self.row = 0
        self.col = 0

    def feed(self, text: str) -> None:
        pos = 0
        for match in CSI.finditer(text):
            self._text(text[pos : match.start()])
            pos = match.end()
            arg, command = match.groups()
            if command == "A":
                self.row = max(0, self.row - int(arg or 1))
            elif command == "K":
                self.lines[self.row] = ""
                self.col = 0
        self._text(text[pos:])

    def _text(self, text: str) -> None:
        for char in text:
            if char == "\n":
                self.row += 1
                self.col = 0
                if self.row == len(self.lines):
                    self.lines.append("")
            elif char == "\r":
                self.col = 0
            else:
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + char + line[self.col + 1 :]
                self.col += 1

    def show(self) -> str:
        lines = [line.rstrip() for line in self.lines]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines[-ROWS:])


def record(args: list[str], cwd: Path) -> list[tuple[float, str]]:
    """Run *args* on a pty; the pieces it wrote, with their arrival time (seconds from start)."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = dict(os.environ, COLUMNS=str(COLUMNS), LINES=str(ROWS), NO_COLOR="1")
    started = time.monotonic()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    pieces: list[tuple[float, str]] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            pieces.append((time.monotonic() - started, chunk.decode("utf-8", "replace")))
    finally:
        os.close(master)
        proc.wait(timeout=60)
    return pieces


def snapshots(pieces: list[tuple[float, str]], moments: list[float]) -> list[tuple[float, str]]:
    """The screen at each of *moments* (seconds from start), and at the end."""
    screen = Screen()
    shots = []
    todo = sorted(moments)
    for at, piece in pieces:
        while todo and at > todo[0]:
            shots.append((todo.pop(0), screen.show()))
        screen.feed(piece)
    shots.append((pieces[-1][0] if pieces else 0.0, screen.show()))
    return shots


def main() -> int:
    command = ["sluiceway", "run", "examples/batch_progress.yaml"]
    with tempfile.TemporaryDirectory() as out:
        sluiceway = str(Path(sys.executable).parent / "sluiceway")
        pieces = record([sluiceway, *command[1:], "--output-dir", out], ROOT)
    start = next((at for at, piece in pieces if "▶" in piece), 0.0)  # after Python's start-up
    moments = [start + 0.7, start + 1.4]
    lines = [
        f"$ {' '.join(command)}",
        f"(a {COLUMNS}-column terminal, colors off; snapshots of the screen while the batch runs and",
        "at its end, replayed from a pty transcript by docs/capture_console.py)",
    ]
    for at, screen in snapshots(pieces, moments):
        lines += ["", f"──── at {at:.1f} s " + "─" * 60, screen.replace(out, "outputs")]
    (ROOT / "docs" / "console_batch.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
