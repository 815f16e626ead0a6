"""One trio guest run per asyncio event loop, and the pieces that cross between them.

``trio.lowlevel.start_guest_run`` runs trio's scheduler as callbacks on the
asyncio loop, in the same thread: trio code and asyncio code take turns, and
neither needs a lock. What crosses over:

- asyncio -> trio: ``GuestRun.start(fn)`` starts a ``Job`` (a trio task in the
  guest's nursery); ``Job.cancel()`` cancels it; a ``trio.Event`` set from
  asyncio wakes a trio task (trio forces a guest tick when a task becomes runnable).
- trio -> asyncio: setting an asyncio future from trio code (trio's ticks run
  as loop callbacks, so this is the loop's own thread).

The guest run starts on first use, from inside the loop, and closes with the
loop: ``loop.shutdown_asyncgens()`` (which ``asyncio.run`` and
``asyncio.Runner`` call) closes an async generator registered at start, and
that cancels the guest's nursery and waits for it. ``aclose()`` does it by hand.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import trio

__all__ = ("GuestRun", "Handoff", "Job", "aclose", "current_guest", "settle", "wait_asyncio")

T = TypeVar("T")

_guests: dict[asyncio.AbstractEventLoop, GuestRun] = {}
"""The guest run of each loop that has one (removed when it ends)."""


class GuestRunClosedError(RuntimeError):
    """The loop's trio guest run has ended (the loop is shutting down)."""


class Job(Generic[T]):
    """One piece of trio work started from asyncio; its outcome is read once ``finished`` is done."""

    def __init__(self, guest: GuestRun, fn: Callable[[], Awaitable[T]]) -> None:
        self._guest = guest
        self._fn = fn
        self._scope = trio.CancelScope()
        self.finished: asyncio.Future[None] = guest.loop.create_future()
        """Done when the trio side has finished (cleanup included)."""
        self.value: T | None = None
        self.error: BaseException | None = None
        self.cancelled = False

    async def run(self) -> None:
        """Run the work (trio side); record its value, error or cancellation."""
        try:
            with self._scope:
                self.value = await self._fn()
            self.cancelled = self._scope.cancelled_caught
        except trio.Cancelled:
            self.cancelled = True  # the guest run is closing
            raise
        except BaseException as exc:  # delivered to the asyncio caller instead
            if isinstance(exc, BaseExceptionGroup) and exc.split(trio.Cancelled)[1] is None:
                self.cancelled = True
                raise
            self.error = exc
        finally:
            if not self.finished.done():
                self.finished.set_result(None)

    def cancel(self) -> None:
        """Cancel the work (from asyncio); ``finished`` says when its cleanup is over."""
        self._guest.run_soon(self._scope.cancel)

    def outcome(self) -> T:
        """The value, or raise the error (``asyncio.CancelledError`` when it was cancelled)."""
        if self.error is not None:
            raise self.error
        if self.cancelled:
            raise asyncio.CancelledError()
        return self.value  # type: ignore[return-value]  # set when neither error nor cancelled


async def settle(job: Job[Any]) -> None:
    """Wait for *job* to finish. Cancelled, cancel the job, still wait for it, then re-raise.

    Waiting out the job's cleanup is what keeps the promise that a cancelled
    run's handlers are closed and its files written before ``CancelledError``
    reaches the caller; that cleanup is shielded and bounded on the trio side.
    """
    try:
        await asyncio.shield(job.finished)
    except asyncio.CancelledError:
        job.cancel()
        while not job.finished.done():
            try:
                await asyncio.shield(job.finished)  # noqa: ASYNC102 - the cleanup is bounded on the trio side
            except asyncio.CancelledError:  # noqa: ASYNC103 - re-raised after the loop
                # cancelled again (anyio re-cancels): the cleanup still has to end
                continue  # noqa: ASYNC104
        raise


async def wait_asyncio(future: asyncio.Future[T]) -> T:
    """Wait (trio side) for an asyncio future; cancelled, cancel it."""
    done = trio.Event()
    future.add_done_callback(lambda _: done.set())
    try:
        await done.wait()
    finally:
        if not future.done():
            future.cancel()
    if future.cancelled():
        raise RuntimeError("the asyncio callback was cancelled")
    return future.result()


class Handoff(Generic[T]):
    """Batches from a trio task to an asyncio reader, at most ``capacity`` batches waiting.

    A full handoff blocks the trio side (backpressure); an empty one blocks
    the asyncio side. Either side wakes the other only when it was waiting.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._loop = loop
        self._capacity = capacity
        self._batches: collections.deque[list[T]] = collections.deque()
        self._closed = False
        self._getter: asyncio.Future[None] | None = None
        self._room: trio.Event | None = None

    @property
    def exhausted(self) -> bool:
        """True once the trio side closed it and every batch was taken."""
        return self._closed and not self._batches

    async def put(self, batch: list[T]) -> None:
        """Hand *batch* over (trio side); blocks while ``capacity`` batches wait."""
        while len(self._batches) >= self._capacity:
            room = self._room = trio.Event()
            await room.wait()
        self._batches.append(batch)
        self._wake_getter()

    def close(self) -> None:
        """No more batches (trio side); the reader gets ``None`` after the last one."""
        self._closed = True
        self._wake_getter()

    def _wake_getter(self) -> None:
        getter, self._getter = self._getter, None
        if getter is not None and not getter.done():
            getter.set_result(None)

    async def get(self) -> list[T] | None:
        """The next batch (asyncio side), or ``None`` at the end; blocks while none waits."""
        while not self._batches:
            if self._closed:
                return None
            getter = self._getter = self._loop.create_future()
            await getter
        batch = self._batches.popleft()
        room, self._room = self._room, None
        if room is not None:
            room.set()  # the trio side waits for room: wake it
        return batch


async def _close_with_loop(guest: GuestRun) -> AsyncGenerator[None, None]:
    # Registered with the loop on its first step; loop.shutdown_asyncgens() closes it.
    try:
        yield
    finally:
        await guest.aclose()


class GuestRun:
    """The trio guest run hosted by one asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    async def begin(self) -> None:
        """Start the guest run on the running loop and wait until it takes jobs."""
        self._closer = _close_with_loop(self)
        await self._closer.asend(None)
        trio.lowlevel.start_guest_run(
            self._main,
            run_sync_soon_threadsafe=self.loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=self.loop.call_soon,
            done_callback=self._done,
            # asyncio's loop owns signal.set_wakeup_fd (add_signal_handler): trio leaves it alone
            host_uses_signal_set_wakeup_fd=True,
        )
        await asyncio.shield(self.ready)

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            if not self.ready.done():
                self.ready.set_result(None)
            await trio.sleep_forever()

    def _done(self, outcome: Any) -> None:
        self._nursery = None
        if _guests.get(self.loop) is self:
            del _guests[self.loop]
        error = getattr(outcome, "error", None)
        if not self.ready.done():
            self.ready.set_exception(GuestRunClosedError(f"the trio guest run ended at start: {error!r}"))
        elif error is not None:
            self.loop.call_exception_handler({"message": "sluiceway.aio: the trio guest run failed", "exception": error})
        if not self.finished.done():
            self.finished.set_result(None)

    def start(self, fn: Callable[[], Awaitable[T]]) -> Job[T]:
        """Start *fn* as a trio task of the guest run (from asyncio, on this loop)."""
        if self._nursery is None:
            raise GuestRunClosedError("this event loop's trio guest run has ended (the loop is closing)")
        job = Job(self, fn)
        self._nursery.start_soon(job.run)
        return job

    def run_soon(self, fn: Callable[[], object]) -> None:
        """Call *fn* in the guest run's context soon (no-op once it has ended)."""
        if self._token is None:
            return
        try:
            self._token.run_sync_soon(fn)
        except trio.RunFinishedError:
            pass

    async def aclose(self) -> None:
        """Cancel everything the guest runs and wait for it to end. Idempotent."""
        if self._nursery is not None:
            self.run_soon(self._nursery.cancel_scope.cancel)
        if self.ready.done() and not self.ready.exception():
            while not self.finished.done():
                try:
                    await asyncio.shield(self.finished)
                except asyncio.CancelledError:  # noqa: ASYNC103 - the guest must end first
                    continue  # noqa: ASYNC104 - the guest's cleanup is bounded: wait it out


async def current_guest() -> GuestRun:
    """The running loop's guest run, started on first use."""
    loop = asyncio.get_running_loop()
    guest = _guests.get(loop)
    if guest is None:
        guest = _guests[loop] = GuestRun(loop)
        try:
            await guest.begin()
        except BaseException:
            if _guests.get(loop) is guest and not guest.ready.done():
                del _guests[loop]
            raise
        return guest
    await asyncio.shield(guest.ready)
    return guest


async def aclose() -> None:
    """Close the running loop's trio guest run, if it has one.

    Cancels every run still going through ``sluiceway.aio`` on this loop (they
    end as cancelled runs do: ``Cancelled`` events, handlers closed, files
    written) and waits for the guest run to end. ``asyncio.run`` and
    ``asyncio.Runner`` do this when they shut the loop down; call it yourself
    before closing a loop you drive by hand. The next ``sluiceway.aio`` call
    starts a new guest run.
    """
    guest = _guests.get(asyncio.get_running_loop())
    if guest is not None:
        await guest.aclose()
