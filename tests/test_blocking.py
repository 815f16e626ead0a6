"""Tool and session file I/O under an autojumping virtual clock does not let deadlines fire."""

from __future__ import annotations

import threading

import trio
import trio.testing
from sluiceway.tools import SessionStore, Toolbox
from sluiceway.tools._blocking import run_blocking


def _slow_read(event: threading.Event) -> str:
    event.wait(0.2)  # real time, as a slow disk would take
    return "done"


async def test_inline_under_autojump_no_deadline_skipped(autojump_clock):
    with trio.fail_after(1):  # virtual: fires if the clock jumped while the work ran
        assert await run_blocking(_slow_read, threading.Event()) == "done"
    assert trio.current_time() == 0


def test_worker_thread_on_a_real_clock():
    seen = []

    async def main():
        seen.append(await run_blocking(threading.current_thread))

    trio.run(main)
    assert seen[0] is not threading.main_thread()


async def test_toolbox_and_sessions_under_autojump_with_a_short_deadline(autojump_clock, tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    box = Toolbox(tmp_path, allowed=["Read", "Write", "Grep", "LS"])
    store = SessionStore(tmp_path)
    with trio.fail_after(0.001):
        for _ in range(20):
            content, is_error = await box.run("Read", {"file_path": "a.txt"})
            assert not is_error and "hello" in content
            await box.run("Grep", {"pattern": "hel"})
            await store.asave("s", [{"role": "user", "content": "x"}], persist=True, max_history=None)
            assert await store.aload("s") == [{"role": "user", "content": "x"}]
