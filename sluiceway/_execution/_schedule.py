"""The step scheduling of one run: order, conditions, passthrough inputs, timeouts, results.

Steps run in order. A step whose ``condition`` does not hold is skipped. A
step that ``python`` steps follow (``input_stream``) runs concurrently with
them, its events copied to each through a bounded channel. Each step's
``StepResult`` is recorded as it ends; a failed step raises ``StepFailed``,
which stops the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio

from .._errors import ProviderTimeoutError, StepError
from .._registry import RegistryError
from .._result import StepResult
from ..engine import ChannelConsumer, Event, Response
from ..specs import PythonStep
from ._consumers import build_consumers
from ._files import OutputFileError, output_file_target, write_output_file
from ._model_call import step_options
from ._runners import STEP_RUNNERS
from ._state import ExecutionState
from ._step_claude import run_claude_step
from ._step_python import stream_python_step

__all__ = ("PASSTHROUGH_BUFFER", "Scheduler", "StepFailed")

#: Events a passthrough input (``python`` step ``input_stream``) holds; bounds memory only.
PASSTHROUGH_BUFFER: Final = 64


class StepFailed(Exception):
    """Internal: a step failed; the run stops."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(name)
        self.name = name
        self.error = error


class Scheduler:
    """Runs the steps of one run in order and records each one's ``StepResult``."""

    def __init__(self, state: ExecutionState) -> None:
        self.state = state

    def condition_holds(self, step: Any) -> bool:
        """Whether *step*'s ``condition`` (if any) holds on the results so far."""
        condition = self.state.prepared.conditions.get(step.name)
        if condition is None:
            return True
        steps_view = {
            name: {"text": r.text, "output": r.output, "status": "ok"} for name, r in self.state.responses.items()
        }
        for name, res in self.state.result.steps.items():
            steps_view.setdefault(name, {"text": res.text, "output": res.output, "status": res.status})
        return condition.evaluate({"steps": steps_view, "vars": self.state.variables})

    async def run_all(self) -> None:
        """Run every step in order; raise ``StepFailed`` at the first that fails."""
        state = self.state
        for step in state.spec.steps:
            if step.name in state.result.steps:
                continue  # already ran, as another step's passthrough input
            if not self.condition_holds(step):
                state.result.steps[step.name] = StepResult(status="skipped", type=step.type)
                continue
            await self.run_with_followers(step)

    async def run_with_followers(self, step: Any) -> None:
        """Run *step*, and the python steps that take its events, side by side."""
        state = self.state
        followers: list[PythonStep] = []
        for name in state.prepared.followers.get(step.name, ()):
            follower = next(s for s in state.spec.steps if s.name == name)
            assert isinstance(follower, PythonStep)  # only python steps take a live input stream
            if not self.condition_holds(follower):
                state.result.steps[name] = StepResult(status="skipped", type=follower.type)
                continue
            followers.append(follower)
        if not followers:
            events = None
            if isinstance(step, PythonStep) and step.input_stream is not None:
                # the upstream was skipped: an input stream that ends at once
                send, events = trio.open_memory_channel[Event](0)
                send.close()
            await self.run_one(step, events=events)
            return
        passthrough: list[Any] = []
        inputs: list[tuple[PythonStep, trio.MemoryReceiveChannel[Event]]] = []
        for follower in followers:
            buffer_size = follower.stream_buffer_size or PASSTHROUGH_BUFFER
            send, receive = trio.open_memory_channel[Event](buffer_size)
            passthrough.append(ChannelConsumer(send, "block", buffer_size))
            inputs.append((follower, receive))
        failures: list[StepFailed] = []

        async def guarded(coro_fn: Callable[[], Awaitable[None]]) -> None:
            try:
                await coro_fn()
            except StepFailed as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for follower, receive in inputs:
                nursery.start_soon(guarded, lambda f=follower, r=receive: self.run_one(f, events=r))
            await guarded(lambda: self.run_one(step, extra_consumers=passthrough))
        if failures:
            # the upstream's failure (if any) is the run's cause; a follower's comes second
            failures.sort(key=lambda f: f.name != step.name)
            raise failures[0]

    async def run_one(
        self,
        step: Any,
        *,
        extra_consumers: Sequence[Any] = (),
        events: trio.MemoryReceiveChannel[Event] | None = None,
    ) -> None:
        """Run one step, record its ``StepResult``; raise ``StepFailed`` when it failed."""
        state = self.state
        try:
            # before anything runs: a path that escapes the output folder fails the step here
            target = output_file_target(state, step) if step.output_to_file else None
        except StepError as exc:
            for consumer in extra_consumers:
                consumer.send_channel.close()
            if events is not None:
                events.close()
            state.result.steps[step.name] = StepResult(status="failed", error=exc, type=step.type)
            raise StepFailed(step.name, exc) from exc
        try:
            handlers, consumers = build_consumers(state, step)
        except (RegistryError, ValueError, TypeError) as exc:
            for consumer in extra_consumers:
                consumer.send_channel.close()
            if events is not None:
                events.close()
            error = StepError(f"stream handler: {exc}", step=step.name)
            error.__cause__ = exc
            state.result.steps[step.name] = StepResult(status="failed", error=error, type=step.type)
            raise StepFailed(step.name, error) from exc
        state.result.handlers[step.name] = handlers
        state.result.steps[step.name] = StepResult(status="cancelled", type=step.type)  # until it ends
        try:
            if isinstance(step, PythonStep):
                response = await stream_python_step(state, step, handlers, events)
            else:
                response = await self._run_model_step(step, [*consumers, *extra_consumers])
            output_file = write_output_file(state, step, response, target) if target is not None else None
        except Exception as exc:
            partial = exc.response if isinstance(exc, OutputFileError) else getattr(exc, "partial", None)
            state.result.steps[step.name] = StepResult(
                status="failed",
                error=exc,
                type=step.type,
                response=partial if isinstance(partial, Response) else None,
            )
            raise StepFailed(step.name, exc) from exc
        except BaseException as exc:  # cancelled: keep what it streamed, then let it propagate
            partial = getattr(exc, "partial", None)
            if isinstance(partial, Response):
                state.result.steps[step.name] = StepResult(status="cancelled", type=step.type, response=partial)
            raise
        state.result.steps[step.name] = StepResult(
            status="ok",
            response=response,
            type=step.type,
            output_file=None if output_file is None else str(output_file),
        )
        state.responses[step.name] = response

    async def _run_model_step(self, step: Any, consumers: Sequence[Any]) -> Response:
        """Run a model step's runner, under its ``timeout_ms`` when it has one."""
        state = self.state
        runner = STEP_RUNNERS.get(step.type, run_claude_step)
        timeout_ms = step_options(state, step).timeout_ms
        if timeout_ms is None:
            return await runner(state, step, consumers)
        streamed: list[Any] = []  # the partial response the timeout's cancellation carried
        try:
            with trio.fail_after(timeout_ms / 1000):
                try:
                    return await runner(state, step, consumers)
                except BaseException as exc:
                    streamed.append(getattr(exc, "partial", None))
                    raise
        except trio.TooSlowError as exc:
            error = ProviderTimeoutError(f"the step took longer than timeout_ms={timeout_ms}", step=step.name)
            error.partial = streamed[0] if streamed else None  # type: ignore[attr-defined]  # the partial response rides on any exception
            raise error from exc
