"""Blocking file I/O off the event loop, except under a virtual clock.

Worker threads are invisible to trio's ``MockClock``: while a thread works,
every task looks blocked, so an autojumping clock skips straight to the next
deadline and a step's ``timeout_ms`` fires during a file read. Under such a
clock (``sluiceway.testing.run_virtual``, pytest-trio's ``autojump_clock``)
the work runs inline instead, after a checkpoint; on a real clock it runs in a
worker thread so a slow disk never stalls other streams.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import trio
import trio.testing

__all__ = ("clock_jumps", "run_blocking")

T = TypeVar("T")


def clock_jumps() -> bool:
    """True under an autojumping ``MockClock``: a wait trio cannot see would let it skip ahead."""
    clock = trio.lowlevel.current_clock()
    return isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold != math.inf


async def run_blocking(fn: Callable[..., T], *args: object) -> T:
    """Call ``fn(*args)`` in a worker thread (inline under an autojumping virtual clock).

    Cancellation: like ``trio.to_thread.run_sync``, a cancel is honoured before the
    call starts, not while it runs; blocks nothing else on a real clock.
    """
    if clock_jumps():
        await trio.lowlevel.checkpoint()
        return fn(*args)
    return await trio.to_thread.run_sync(fn, *args)
