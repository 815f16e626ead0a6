"""The ``Bash`` tool: one shell command, bounded in time and in the output kept.

The command line comes from the ``Toolbox``: ``bwrap ... -- bash -c COMMAND``
(see ``_sandbox``), or ``bash -c COMMAND`` when the step opted out of the
sandbox. Either way it runs in a session of its own, so a timeout or a
cancellation kills it with everything in its process group (and, in the
sandbox, killing ``bwrap`` ends its PID namespace and everything inside).

The process is started on the event loop's thread (``_spawn`` says why). On a
real clock trio then reads its output and waits for its exit (on a pidfd);
under an autojumping virtual clock those waits would look idle and the clock
would jump to the timeout, so it runs to its end on this thread on real time
instead (``_bash_blocking``), while virtual time stands still.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Final

import trio

from ._blocking import clock_jumps
from ._results import MAX_OUTPUT_CHARS, ToolFailure, cap

__all__ = ("run_bash",)

#: Bytes read from the command's output at a time.
_READ_SIZE: Final = 65536
#: Seconds between checks that a command has exited, where there is no pidfd to wait on.
_POLL_INTERVAL: Final = 0.01


def _kill_session(pid: int) -> None:
    """Kill the command and everything it started (it runs in its own session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass


class _Output:
    """A command's output as it is read: a bounded prefix kept, the rest counted and dropped.

    Everything is read (a full pipe would stall the command); the text is capped after.
    """

    __slots__ = ("chunks", "dropped", "kept")

    #: Bytes kept.
    LIMIT: Final = MAX_OUTPUT_CHARS * 4

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.kept = 0
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        if self.kept < self.LIMIT:
            self.chunks.append(chunk)
            self.kept += len(chunk)
        else:
            self.dropped += len(chunk)


def _spawn(argv: list[str], env: dict[str, str], cwd: Path, output: int) -> subprocess.Popen[bytes]:
    """Start *argv* in a session of its own, stdout and stderr to the fd *output*, no stdin.

    On this thread, not a worker thread (as ``trio.run_process`` does): ``bwrap
    --die-with-parent`` ties the sandbox to the *thread* that started it, and
    trio retires idle worker threads, which would kill a long command midway.
    The event loop's thread lives as long as the run.
    """
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, cwd=cwd, env=env,
        start_new_session=True,  # so a timeout kills its children too
    )


def _bash_blocking(
    argv: list[str], env: dict[str, str], cwd: Path, kill_after: float
) -> tuple[_Output, bool, int | None]:
    """Run *argv* to its end on this thread, as ``run_bash`` does under trio: ``(output, timed out, status)``.

    For virtual time only (it blocks the event loop): reads everything, keeps a
    bounded prefix, and kills the command's session after *kill_after* real seconds.
    """
    read_end, write_end = os.pipe()
    try:
        process = _spawn(argv, env, cwd, write_end)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    deadline = time.monotonic() + kill_after
    out = _Output()
    timed_out = False
    with open(read_end, "rb", buffering=0) as stream:
        fd = stream.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                timed_out = True
                break
            chunk = os.read(fd, _READ_SIZE)
            if not chunk:
                break
            out.add(chunk)
    if timed_out:
        _kill_session(process.pid)
    return out, timed_out, process.wait()


def _bash_outcome(out: _Output, timed_out: bool, status: int | None, timeout: float) -> str:
    """A command's tool result from its output: the text, or ``ToolFailure`` (timed out, non-zero exit)."""
    output = b"".join(out.chunks).decode("utf-8", errors="replace")
    if out.dropped:
        output += f"\n... [{out.dropped} more bytes of output dropped]"
    output = cap(output)
    if timed_out:
        raise ToolFailure(f"command timed out after {timeout:g}s and was killed\n{output}".rstrip())
    if status != 0:
        raise ToolFailure(f"{output}\n[exit status {status}]".lstrip())
    return output if output else "(no output)"


async def _wait(process: subprocess.Popen[bytes]) -> int:
    """Wait for *process* to exit without a thread: its pidfd on Linux, else a short poll."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux (sandbox: none elsewhere), or an old kernel
        while process.poll() is None:  # noqa: ASYNC110 - nothing to wait on but time
            await trio.sleep(_POLL_INTERVAL)
        return process.returncode
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    return process.wait()


async def run_bash(argv: list[str], env: dict[str, str], cwd: Path, kill_after: float) -> str:
    """Run the command line *argv* (a shell command, wrapped or not) in *cwd*; return its output.

    The command gets no stdin, exactly the environment *env*, and runs in its own
    session: a timeout (*kill_after* seconds) or a cancellation kills its process
    group (for ``bwrap``, that ends the sandbox and everything in it). Output is
    read as it comes (a full pipe would stall the command) and only a bounded
    prefix is kept. A non-zero exit status or a timeout is a ``ToolFailure``
    carrying the output. Blocks until the command ends.
    """
    if clock_jumps():
        # virtual time: trio's process wait would look idle and the clock would jump to the
        # timeout; run it here, on real time, while virtual time stands still
        await trio.lowlevel.checkpoint()
        return _bash_outcome(*_bash_blocking(argv, env, cwd, kill_after), kill_after)
    out = _Output()
    read_end, write_end = os.pipe()
    try:
        process = _spawn(argv, env, cwd, write_end)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    try:
        with trio.move_on_after(kill_after) as scope:
            async with trio.lowlevel.FdStream(read_end) as output:
                while chunk := await output.receive_some(_READ_SIZE):
                    out.add(bytes(chunk))
            status = await _wait(process)
    finally:
        if process.returncode is None:  # timed out or cancelled: kill it all, then reap it
            _kill_session(process.pid)
            with trio.CancelScope(shield=True):
                status = await _wait(process)
    return _bash_outcome(out, scope.cancelled_caught, status, kill_after)
