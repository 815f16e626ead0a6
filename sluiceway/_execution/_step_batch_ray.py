"""The driver side of ``executor: ray``: shards, actors, the pumps, and the sub-steps' relays.

``run_ray_batch`` is the ``claude_batch`` step with ``executor: ray``. It renders
every task's prompt here (files and earlier steps' responses are here), makes
``actors`` actors, gives each a shard (task ``i`` to actor ``i % actors``) and
starts one pump per actor's streaming generator. A pump takes one batch of
events at a time (in a worker thread: trio cannot await a Ray object) and routes
each event to its sub-step's relay (``engine.relay_step``) through a small
bounded channel, which delivers it to the step's fan-in (``stream_group``), so
consumers see what a local batch gives. A full relay blocks its pump; the pump
then stops taking items, and Ray's generator backpressure stops the actor.

A dying actor: its pump gets the actor's error; every task of its job without
a terminal event is sent to another live actor, a started one first getting a
``Retrying`` (``output_may_have_started`` says whether its deltas reached the
consumers) and its later events renumbered after it (``seq`` and ``attempt``
go on from where they were; the new ``StepStarted`` is dropped). A task whose
call's ``Message`` had already come (its output is complete; only its ``Done``
was lost) ends here with that message's response instead of being called again.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any, Final

import attrs
import trio

from .._errors import SluicewayError, StepError
from .._ray._actor import ACTOR_CONCURRENCY, BatchActor
from .._ray._cluster import RAY_NAMESPACE, actor_runtime_env, import_ray, open_cluster
from .._ray._jobs import ActorSettings, BatchJob, BatchTask, TaskOutcome, unpack
from ..engine import (
    TERMINAL_EVENTS,
    Cancelled,
    Delta,
    Done,
    Event,
    Failed,
    Message,
    Metrics,
    ModelRequest,
    Response,
    Retrying,
    StepStarted,
    ThinkingDelta,
    ToolInputDelta,
    ToolUse,
    Usage,
    cost_usd,
    stream_group,
)
from ..engine._relay import relay_step
from ._composite import SubConsumer, batch_result, group_kwargs
from ._model_call import (
    build_request,
    handler_error_policy,
    handler_timeout,
    step_options,
)
from ._resume import PlannedCall, plan_calls, replay_call
from ._state import ExecutionState

__all__ = ("GENERATOR_BACKPRESSURE", "run_ray_batch")

#: Batches an actor's generator may yield ahead of the driver's pump (Ray's generator backpressure).
GENERATOR_BACKPRESSURE: Final = 2
#: Runs of events (a sub-step's part of one actor batch) waiting for its relay: none, the relay takes each
#: from the pump (a run can be a whole batch: the bound is per sub-step).
_RELAY_BUFFER: Final = 0
#: Seconds the driver waits for Ray to take the cancellation of the actors' jobs, and to kill them.
_STOP_TIMEOUT: Final = 5.0
#: Events that mean a sub-step's output (a delta or a tool call) reached the consumers.
_OUTPUT_EVENTS: Final = (Delta, ThinkingDelta, ToolInputDelta, ToolUse)


@attrs.define(eq=False)
class _Task:
    """The driver's view of one task."""

    index: int
    request: ModelRequest
    send: trio.MemorySendChannel[list[Event]] | None = None
    """Into its relay (runs of events), once its first event came."""
    finished: bool = False
    """Its terminal event came (or it was failed here)."""
    last_seq: int = 0
    attempt: int = 1
    output_started: bool = False
    """The current attempt's output reached the consumers."""
    redispatched: bool = False
    seq_offset: int = 0
    """Added to the ``seq`` of the events of the actor it was re-dispatched to."""
    attempt_offset: int = 0
    """Added to their ``attempt``."""
    error: BaseException | None = None
    """What it failed with (a ``TaskOutcome``, or a driver-side failure)."""
    message: Message | None = None
    """Its call's ``Message``, once it came: the call is complete (a Ray task makes one call)."""
    retries: int = 0
    """Its ``Retrying`` events: each superseded a call that was made (and may have been paid)."""
    input_hash: str = ""
    """Its call's input hash: its response is saved under it (``--resume``)."""
    provider: str = ""
    """The provider's name, saved with its response."""

    @property
    def path(self) -> str:
        return self.request.step


async def run_ray_batch(
    state: ExecutionState, step: Any, consumers: Sequence[Any], prompts: Sequence[tuple[Any, Any]]
) -> Response:
    """``claude_batch`` with ``executor: ray``: the tasks on Ray actors, their events to *consumers*.

    Same contract as the local batch: sub-steps ``NAME[i]``, one terminal each,
    outputs in task order; a failed task fails the step after the others end.
    A local cluster, when the step starts one, is stopped when it ends; the
    step's actors are killed at its end either way. Cancelled: the actors' jobs
    are cancelled and every started sub-step still ends with one terminal event.

    Raises:
        RayUnavailableError: Ray is not installed.
        StepError: an option the Ray executor cannot honour, or failed tasks.
    """
    ray = import_ray()
    config = step.batch_config
    if config.max_parallel < 1:
        raise StepError(f"batch_config.max_parallel must be >= 1, got {config.max_parallel}", step=step.name)
    if config.actors < 1:
        raise StepError(f"batch_config.actors must be >= 1, got {config.actors}", step=step.name)
    settings = _actor_settings(state, step)
    opts = step_options(state, step)
    runtime_env = actor_runtime_env(config.runtime_env, live=settings.mode == "live")
    started = trio.current_time()
    wall_origin = time.time() - state.run_context.now()
    store = state.resume.store(step.name, batch=True)
    responses: list[Response | None] = [None] * len(prompts)
    errors: dict[int, BaseException] = {}

    async def replay(index: int, call: PlannedCall, sub: SubConsumer) -> None:
        try:
            responses[index] = await replay_call(state, step, [sub()], store, call, path=f"{step.name}[{index}]")
        except Exception as exc:
            errors[index] = exc

    async def body(sub: SubConsumer) -> Response:
        # each task's rendered prompt and input hash, and its saved response when a resumed run has one
        calls = await plan_calls(state, step, state.provider, store, prompts)
        tasks: list[_Task] = []
        async with trio.open_nursery() as nursery:
            for index, call in enumerate(calls):
                if isinstance(call, Exception):  # its prompt cannot be rendered: it fails alone
                    errors[index] = call
                elif call.saved is not None:  # replayed here: no actor, no cost
                    nursery.start_soon(replay, index, call, sub)
                else:
                    request = build_request(state, step, call.text, path=f"{step.name}[{index}]", options=opts)
                    tasks.append(_Task(index, request, input_hash=call.input_hash, provider=call.provider))
            if tasks:
                async with open_cluster(ray, config.ray_address):
                    dispatcher = _Dispatcher(
                        ray, state, step, settings, tasks, sub, runtime_env, wall_origin, responses, store
                    )
                    await dispatcher.run(min(config.actors, len(tasks)))
        errors.update({t.index: t.error for t in tasks if t.error is not None})
        return batch_result(step.name, responses, errors, started)

    return await stream_group(
        consumers=consumers, body=body,
        concurrency=min(config.actors * config.max_parallel, max(len(prompts), 1)), tasks=len(prompts),
        **group_kwargs(state, step),
    )


def _actor_settings(state: ExecutionState, step: Any) -> ActorSettings:
    """What the actors need of the run and the step; raises ``StepError`` for what they cannot run."""
    options = state.options
    if options.provider is not None:
        raise StepError("executor: ray runs the mode's own provider, not a given provider instance", step=step.name)
    if options.mode not in ("mock", "live"):
        raise StepError(f"executor: ray runs in mock or live mode, not {options.mode}", step=step.name)
    if options.record is not None:
        raise StepError("executor: ray cannot record a cassette (--record)", step=step.name)
    opts = step_options(state, step)
    if opts.allowed_tools or opts.tools or opts.mcp_servers or opts.can_use_tool or options.tools:
        raise StepError("executor: ray runs batch tasks without tools (allowed_tools, tools, mcp_servers, "
                        "can_use_tool); use the local executor for those", step=step.name)
    config = step.batch_config
    provider = state.provider
    recorded = getattr(provider, "recorded_name", None)
    return ActorSettings(
        mode=options.mode,
        live_options=dict(options.live_options),
        step_type=step.type,
        max_turns=opts.max_turns or 1,
        max_parallel=config.max_parallel,
        timeout_per_task=config.timeout_per_task,
        free="mock" in (getattr(provider, "name", None), recorded),
        pricing=dict(state.spec.defaults.pricing or {}),
    )


class _Dispatcher:
    """The step's actors, their jobs and pumps, and the tasks' relays."""

    def __init__(self, ray: Any, state: ExecutionState, step: Any, settings: ActorSettings,
                 tasks: list[_Task], sub: SubConsumer, runtime_env: dict[str, Any], wall_origin: float,
                 responses: list[Response | None], store: Any) -> None:
        self.ray = ray
        self.state = state
        self.step = step
        self.settings = settings
        self.tasks = tasks
        self.by_path = {t.path: t for t in tasks}
        self.sub = sub
        self.runtime_env = runtime_env
        self.wall_origin = wall_origin
        self.responses = responses
        """Every task's response by index (the replayed ones' too), filled in as they end."""
        self.store = store
        """Where each finished task's response is saved as it ends (``--resume``)."""
        self.actors: list[Any] = []
        self.alive: list[bool] = []
        self.job_ids = itertools.count()
        self.next_actor = itertools.count()
        self.running: dict[int, tuple[Any, Any]] = {}
        """Job id -> (its actor, its generator), while its pump runs."""
        self.nursery: trio.Nursery | None = None

    async def run(self, count: int) -> None:
        """Make *count* actors, stream every task through them, and kill them at the end."""
        ray = self.ray
        remote = ray.remote(max_concurrency=ACTOR_CONCURRENCY, num_cpus=0, max_restarts=0)(BatchActor)
        run_id = self.state.run_id
        try:
            for i in range(count):
                self.actors.append(remote.options(
                    name=f"{run_id}/{self.step.name}/{i}", namespace=RAY_NAMESPACE,
                    runtime_env=self.runtime_env or None, scheduling_strategy="SPREAD",
                ).remote(self.settings))
                self.alive.append(True)
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                for i in range(count):
                    shard = [t for t in self.tasks if t.index % count == i]
                    if shard:
                        nursery.start_soon(self.pump, i, shard)
        finally:
            with trio.move_on_after(_STOP_TIMEOUT, shield=True):
                await trio.to_thread.run_sync(self._stop_all, abandon_on_cancel=True)

    def _stop_all(self) -> None:
        """Cancel the jobs still running and kill every actor of the step (a worker thread)."""
        ray = self.ray
        for job_id, (actor, generator) in list(self.running.items()):
            try:
                actor.cancel_job.remote(job_id)
                ray.cancel(generator)
            except Exception:  # the actor is gone already
                pass
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass

    async def pump(self, actor_no: int, shard: list[_Task]) -> None:
        """Stream *shard* on actor *actor_no*; route every event; re-dispatch if the actor dies."""
        ray = self.ray
        actor = self.actors[actor_no]
        job = BatchJob(
            job_id=next(self.job_ids), run_id=self.state.run_id, wall_origin=self.wall_origin,
            tasks=tuple(BatchTask(index=t.index, request=t.request) for t in shard),
        )
        generator = actor.stream.options(
            num_returns="streaming", _generator_backpressure_num_objects=GENERATOR_BACKPRESSURE
        ).remote(job)
        self.running[job.job_id] = (actor, generator)
        failure: BaseException | None = None
        try:
            while True:
                batch = await trio.to_thread.run_sync(_take, ray, generator, abandon_on_cancel=True)
                if batch is None:
                    break
                await self.route(batch)
        except ray.exceptions.RayError as exc:
            failure = exc
        finally:
            self.running.pop(job.job_id, None)
            if failure is None and any(not t.finished for t in shard):
                # cancelled (the step's scope): tell the actor, without waiting for it
                try:
                    actor.cancel_job.remote(job.job_id)
                    ray.cancel(generator)
                except Exception:
                    pass
        if failure is not None:
            await self.lost(actor_no, shard, failure)
        else:
            for task in shard:
                if not task.finished:  # the generator ended early: not expected of a live actor
                    await self.fail(task, SluicewayError(f"{task.path}: the actor's stream ended before the task"))

    async def route(self, batch: list[Any]) -> None:
        """One batch of an actor: each sub-step's events, as one run, to its relay; the tasks' outcomes noted."""
        runs: dict[_Task, list[Event]] = {}
        by_path = self.by_path
        run_id = self.state.run_id
        for packed in batch:
            item = unpack(packed, run_id)
            if isinstance(item, TaskOutcome):
                by_path[item.step].error = item.error
                continue
            task = by_path[item.step]
            if task.finished:
                continue
            if task.redispatched:
                if isinstance(item, StepStarted):
                    continue
                item = attrs.evolve(item, seq=item.seq + task.seq_offset, attempt=item.attempt + task.attempt_offset)
            self.note(task, item)
            run = runs.get(task)
            if run is None:
                runs[task] = [item]
            else:
                run.append(item)
        for task, events in runs.items():
            await self.send_run(task, events)

    def note(self, task: _Task, event: Event) -> None:
        """What *event*, on its way to *task*'s relay, says of the task."""
        task.last_seq, task.attempt = event.seq, event.attempt
        if isinstance(event, _OUTPUT_EVENTS):
            task.output_started = True
        elif isinstance(event, Message):
            if event.role == "assistant":
                task.message = event
        elif isinstance(event, Retrying):
            task.output_started = False
            task.message = None
            task.retries += 1
        elif isinstance(event, TERMINAL_EVENTS):
            task.finished = True

    async def deliver(self, task: _Task, event: Event) -> None:
        """Send one event made here (``Retrying``, ``Failed``) to *task*'s relay."""
        self.note(task, event)
        await self.send_run(task, [event])

    async def send_run(self, task: _Task, events: list[Event]) -> None:
        """Send *events* (in order) to *task*'s relay, started on its first run; closed after the terminal."""
        if task.send is None:
            task.send, receive = trio.open_memory_channel[list[Event]](_RELAY_BUFFER)
            assert self.nursery is not None
            self.nursery.start_soon(self.relay, task, receive)
        try:
            try:
                task.send.send_nowait(events)
            except trio.WouldBlock:
                await task.send.send(events)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # its relay ended (a handler failed the sub-step): the rest is not read
        if task.finished:
            task.send.close()

    async def relay(self, task: _Task, receive: trio.MemoryReceiveChannel[list[Event]]) -> None:
        """Deliver *task*'s events to the step's fan-in; record its response."""
        state, step = self.state, self.step
        terminal = await relay_step(
            run=state.run_context, path=task.path, consumers=[self.sub()], receive_events=receive,
            on_handler_error=handler_error_policy(state, step), handler_timeout=handler_timeout(state, step),
        )
        # the run's paid requests (result.json): the calls its response holds, and each superseded one
        response = getattr(terminal, "response", None) or getattr(terminal, "partial", None)
        calls = sum(1 for m in response.messages if m.role == "assistant") if response is not None else 0
        state.requests += calls + task.retries
        if isinstance(terminal, Done):
            self.responses[task.index] = terminal.response
            self.store.save(task.index, task.input_hash, terminal.response, provider=task.provider)
        elif task.error is None:
            if isinstance(terminal, Failed):
                task.error = terminal.error
            elif isinstance(terminal, Cancelled):
                task.error = SluicewayError(f"{task.path} was cancelled")

    async def fail(self, task: _Task, error: BaseException) -> None:
        """End *task* here with ``Failed(error)`` (after its events, if it had any)."""
        task.error = error
        if task.send is None:
            task.finished = True
            return
        await self.deliver(task, Failed(
            run_id=self.state.run_id, step=task.path, attempt=task.attempt, seq=task.last_seq + 1,
            at=self.state.run_context.now(), error=error, message=str(error),
        ))

    def finished(self, task: _Task) -> Done:
        """The ``Done`` of *task* whose actor died after its call's ``Message`` reached us.

        A Ray batch task makes one model call (no tools), so its ``Message`` is its
        whole output: running it again would repeat a finished call. The response
        is the message's (its metrics beyond the counts are lost with the actor).
        """
        message = task.message
        assert message is not None
        usage = message.usage or Usage()
        model = task.request.model
        cost = 0.0 if self.settings.free else cost_usd(model, usage, dict(self.settings.pricing) or None)
        response = Response(
            text=message.text, messages=(message,), usage=usage, cost_usd=cost, stop_reason=message.stop_reason,
            model=model, metrics=Metrics(message_count=1),
        )
        return Done(
            run_id=self.state.run_id, step=task.path, attempt=task.attempt, seq=task.last_seq + 1,
            at=self.state.run_context.now(), response=response,
        )

    async def lost(self, actor_no: int, shard: list[_Task], failure: BaseException) -> None:
        """Actor *actor_no* failed: re-dispatch its unfinished tasks to a live actor (or fail them)."""
        ray = self.ray
        if isinstance(failure, ray.exceptions.RayActorError | ray.exceptions.ActorUnavailableError):
            self.alive[actor_no] = False
        else:  # the job itself raised: running it again elsewhere would not help
            for task in shard:
                if not task.finished:
                    await self.fail(task, SluicewayError(f"executor: ray: {failure}"))
            return
        orphans = [t for t in shard if not t.finished]
        alive = [i for i, ok in enumerate(self.alive) if ok]
        if not alive:
            for task in orphans:
                await self.fail(task, SluicewayError(f"executor: ray: every actor died ({failure})"))
            return
        complete = [t for t in orphans if t.message is not None]
        for task in complete:  # its call ended and its Message came; only its Done was lost
            await self.deliver(task, self.finished(task))
        orphans = [t for t in orphans if t.message is None]
        reason = f"the Ray actor running it died: {type(failure).__name__}"
        for task in orphans:
            if task.send is None:
                continue  # not started: it starts afresh
            retry = Retrying(
                run_id=self.state.run_id, step=task.path, attempt=task.attempt, seq=task.last_seq + 1,
                at=self.state.run_context.now(), reason=reason, delay=0.0,
                output_may_have_started=task.output_started, next_attempt=task.attempt + 1,
            )
            task.seq_offset, task.attempt_offset = retry.seq, task.attempt
            task.redispatched = True
            await self.deliver(task, retry)
        if orphans:
            target = alive[next(self.next_actor) % len(alive)]
            assert self.nursery is not None
            self.nursery.start_soon(self.pump, target, orphans)


def _take(ray: Any, generator: Any) -> list[Any] | None:
    """The generator's next batch, or ``None`` at its end (blocks: run it in a worker thread)."""
    try:
        ref = next(generator)
    except StopIteration:
        return None
    batch: list[Any] = ray.get(ref)
    return batch
