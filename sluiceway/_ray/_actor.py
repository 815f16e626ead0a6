"""The Ray actor of ``executor: ray``: one long-lived trio run that streams its tasks with the engine.

``BatchActor`` is a plain class; the driver makes it a Ray actor (threaded,
``max_concurrency`` above one) so that this module imports no Ray. Its
``__init__`` starts a thread that hosts one trio run for the actor's life (one
trio run per thread; the run outlives every generator that drains it). The
provider is opened there once, for every task of every job.

``stream(job)`` is the actor's streaming generator (one per job): it starts the
job in the trio run, each task an ordinary ``stream_step`` (the engine as it is:
``attempt``, ``seq`` and retries mean what they mean in one process) feeding one
bounded channel, and yields the events in batches: a batch goes when it holds
``flush_events`` events, or ``flush_interval`` after its first event. The
generator thread takes each batch from the trio run (``trio.from_thread.run``);
while Ray's generator backpressure holds the generator at a ``yield``, nobody
takes batches, the channel fills, and the tasks block on it: a slow driver
slows the actors' model calls, and nothing piles up.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

import trio

from .._errors import ProviderTimeoutError, SluicewayError
from ..engine import ChannelConsumer, Provider, stream_step
from ..engine._pricing import cost_usd
from ._jobs import ActorSettings, BatchJob, BatchTask, TaskOutcome, pack, portable_error

__all__ = ("ACTOR_CONCURRENCY", "BatchActor")

#: Threads the actor runs methods in: the jobs' generators (a shard, plus those re-dispatched
#: from a dead actor) and ``cancel_job`` calls beside them.
ACTOR_CONCURRENCY: Final = 16
#: Events waiting between a job's tasks and its generator, per task streaming at once.
_EVENTS_PER_TASK: Final = 16
#: Seconds the host run waits for its provider to close when the actor stops.
_CLOSE_TIMEOUT: Final = 5.0


class _JobRun:
    """One job in the actor's trio run: its tasks' events, batched for the generator."""

    def __init__(self, job: BatchJob, settings: ActorSettings) -> None:
        self.job = job
        self.settings = settings
        size = _EVENTS_PER_TASK * max(1, min(settings.max_parallel, len(job.tasks)))
        self.send, self.receive = trio.open_memory_channel[Any](size)
        self.scope = trio.CancelScope()

    def cancel(self) -> None:
        """Cancel the job's tasks (each still sends its ``Cancelled``) and stop its batches."""
        self.scope.cancel()

    async def next_batch(self) -> list[Any] | None:
        """The next batch of events (and ``TaskOutcome``s); ``None`` once every task has ended.

        Waits for a first event, then at most ``flush_interval`` for more (or until
        ``flush_events``): a batch per Ray item, since one item per event costs the
        driver far more than the wait.
        """
        receive = self.receive
        try:
            batch = [await receive.receive()]
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None
        limit = self.settings.flush_events
        with trio.move_on_after(self.settings.flush_interval):
            while len(batch) < limit:
                try:
                    batch.append(receive.receive_nowait())
                    continue
                except trio.WouldBlock:
                    pass
                except trio.EndOfChannel:
                    break
                try:
                    batch.append(await receive.receive())
                except trio.EndOfChannel:
                    break
        return [pack(event) for event in batch]


class BatchActor:
    """Hosts one trio run; streams jobs of batch tasks from it (see the module)."""

    def __init__(self, settings: ActorSettings) -> None:
        self.settings = settings
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._jobs: dict[int, _JobRun] = {}
        self._thread = threading.Thread(target=self._host, name="sluiceway-trio", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    # ---- the host run (its own thread)

    def _host(self) -> None:
        try:
            trio.run(self._main)
        except Exception as exc:  # the run could not start: __init__ reports it
            self._failure = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        provider = self._provider = _open_provider(self.settings)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._stopping = trio.Event()
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()
                await self._stopping.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await provider.aclose()

    async def _start(self, job: BatchJob) -> _JobRun:
        run = _JobRun(job, self.settings)
        self._jobs[job.job_id] = run
        self._nursery.start_soon(self._run_job, run)
        return run

    async def _run_job(self, run: _JobRun) -> None:
        settings = self.settings
        job = run.job
        # events' ``at``: seconds since the driver's run start, by the wall clock
        origin = trio.current_time() - (time.time() - job.wall_origin)
        context = _run_context(job.run_id, origin)
        limiter = trio.CapacityLimiter(settings.max_parallel)
        cost = _cost_function(settings)
        provider = self._provider
        try:
            with run.send, run.scope:
                async with trio.open_nursery() as nursery:
                    for task in job.tasks:
                        nursery.start_soon(
                            self._run_task, task, run.send.clone(), context, provider, limiter, cost
                        )
        finally:
            self._jobs.pop(job.job_id, None)

    async def _run_task(self, task: BatchTask, send: trio.MemorySendChannel[Any], context: Any,
                        provider: Provider, limiter: trio.CapacityLimiter, cost: Any) -> None:
        settings = self.settings
        path = task.request.step
        with send:
            async with limiter:
                try:
                    call = stream_step(
                        run=context, path=path, provider=provider, request=task.request,
                        consumers=[ChannelConsumer(send.clone())], step_type=settings.step_type,
                        max_turns=settings.max_turns, cost=cost,
                    )
                    timeout = settings.timeout_per_task
                    try:
                        with trio.fail_after(math.inf if timeout is None else timeout):
                            await call
                    except trio.TooSlowError as exc:
                        raise ProviderTimeoutError(
                            f"task {task.index} took longer than timeout_per_task={timeout}s", step=path,
                        ) from exc
                except Exception as exc:  # the task's failure travels beside its terminal event
                    try:
                        await send.send(TaskOutcome(step=path, error=portable_error(exc)))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

    # ---- the Ray-facing methods (each in one of the actor's threads)

    def stream(self, job: BatchJob) -> Iterator[list[Any]]:
        """Stream *job*'s tasks; yield their events in batches. Closing the generator cancels the job."""
        token = self._token
        assert token is not None
        run = trio.from_thread.run(self._start, job, trio_token=token)
        try:
            while True:
                batch = trio.from_thread.run(run.next_batch, trio_token=token)
                if batch is None:
                    return
                yield batch
        finally:
            try:
                trio.from_thread.run_sync(run.cancel, trio_token=token)
            except trio.RunFinishedError:
                pass

    def cancel_job(self, job_id: int) -> bool:
        """Cancel job *job_id* (its tasks end ``Cancelled``); False when it is not running."""
        token = self._token
        assert token is not None

        def cancel() -> bool:
            run = self._jobs.get(job_id)
            if run is None:
                return False
            run.cancel()
            return True

        try:
            return trio.from_thread.run_sync(cancel, trio_token=token)
        except trio.RunFinishedError:
            return False

    def pid(self) -> int:
        """The actor's process id (the driver's tests look for it after a run)."""
        return os.getpid()

    def stop(self) -> None:
        """End the host run (the provider closes); the actor is useless afterwards."""
        token = self._token
        if token is None:
            return
        try:
            trio.from_thread.run_sync(self._stopping.set, trio_token=token)
        except trio.RunFinishedError:
            return
        self._thread.join(_CLOSE_TIMEOUT)


def _open_provider(settings: ActorSettings) -> Provider:
    # deferred: the mode's provider module loads in the actor only
    from .._registry import resolve_provider

    if settings.mode == "mock":
        return resolve_provider("mock")()
    if settings.mode == "live":
        return resolve_provider("claude")(**settings.live_options)
    raise SluicewayError(f"executor: ray runs mock and live mode, not {settings.mode!r}")


def _run_context(run_id: str, origin: float) -> Any:
    from ..engine import RunContext

    return RunContext(run_id=run_id, origin=origin)


def _cost_function(settings: ActorSettings) -> Any:
    if settings.free:
        return lambda model, usage: 0.0
    overrides = dict(settings.pricing) or None

    def cost(model: str | None, usage: Any) -> float | None:
        return None if model is None else cost_usd(model, usage, overrides)

    return cost
