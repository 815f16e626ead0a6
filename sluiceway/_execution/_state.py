"""The state one spec run shares across its steps: ``ExecutionState``.

Not to be confused with the engine's ``RunContext`` (run id, clock origin and
event sink: what ``stream_step`` needs of a run), which ``ExecutionState``
holds as ``run_context``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from .._result import RunResult
from ..engine import Event, HandlerContext, Provider, Response, RunContext, cost_usd
from ..specs import Pipeline
from ..tools import SessionStore
from ._modes import RunOptions
from ._prepare import Prepared

if TYPE_CHECKING:
    from ._saved import ResumeState

__all__ = ("CLOSE_TIMEOUT", "ExecutionState", "new_run_id")

#: Seconds allowed for closing providers and handlers, and delivering ``RunFinished``, at the end.
CLOSE_TIMEOUT: Final = 5.0


def new_run_id() -> str:
    """``run_<UTC yyyymmdd-HHMMSS>_<6 hex>``: sortable and unique enough."""
    return f"run_{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}_{secrets.token_hex(3)}"


@attrs.define(kw_only=True)
class ExecutionState:
    """Everything one run of a spec shares across its steps. Step runners read it."""

    spec: Pipeline
    """The pipeline being run."""
    options: RunOptions
    """How it was asked to run."""
    prepared: Prepared
    """What ``prepare`` derived from the spec."""
    run_id: str
    """The run's id."""
    run_context: RunContext
    """The engine's view of the run: id, clock origin, event sink."""
    provider: Provider
    """The mode's provider, for model steps."""
    workspace: Path
    """The resolved workspace (tools, prompt files, sessions)."""
    out_root: Path
    """The resolved output folder."""
    run_dir: Path
    """``out_root / run_id``: the run's own files."""
    variables: dict[str, Any]
    """The spec's variables after ``--set``."""
    result: RunResult
    """The live result, filled in as steps end."""
    started_wall: float
    """``time.time()`` at the start."""
    timestamp: str
    """``{{timestamp}}`` in templates: the local start time."""
    responses: dict[str, Response] = attrs.field(factory=dict)
    """Finished steps' responses, by name."""
    extra_providers: dict[str, Provider] = attrs.field(factory=dict)
    """Providers ``llm`` steps made (by reference); the run closes them at its end."""
    send_events: trio.MemorySendChannel[Event] | None = None
    """The run's event stream, if any."""
    sessions: SessionStore | None = None
    """The run's ``SessionStore`` (made by the first ``claude_session`` step)."""
    resume: ResumeState
    """Where the run saves each model call's response, the run it resumes, and what it reused."""
    requests: int = 0
    """Model calls made so far (retries included; replayed responses are not calls)."""

    def session_store(self) -> SessionStore:
        """The run's ``SessionStore`` under the workspace (one per run)."""
        if self.sessions is None:
            self.sessions = SessionStore(self.workspace)
        return self.sessions

    def template_values(self, step_name: str) -> dict[str, Any]:
        """The values a prompt template of *step_name* sees."""
        return {
            "execution_id": self.run_id,
            "step": step_name,
            "timestamp": self.timestamp,
            "vars": self.variables,
            "steps": {
                name: {"text": r.text, "output": r.output} for name, r in self.responses.items()
            },
        }

    def handler_context(self, path: str, ref: str) -> HandlerContext:
        """The ``HandlerContext`` of handler *ref* on the step at *path*.

        A top-level step's context says where it is in the run (``position``,
        for "step i of N") and how many sub-steps it has (``substeps``, for a
        progress bar's total).
        """
        steps = self.spec.steps
        index = next((i for i, s in enumerate(steps) if s.name == path), None)
        return HandlerContext(
            position=None if index is None else (index + 1, len(steps)),
            substeps=None if index is None else _substep_count(steps[index]),
            run_id=self.run_id,
            step=path,
            name=ref,
            pipeline=self.spec.name,
            output_dir=str(self.out_root),
            stdout=self.options.stdout,
            stderr=self.options.stderr,
            started_wall=self.started_wall,
            variables=self.variables,
        )

    def now(self) -> float:
        """Seconds since the run started, on the trio clock."""
        return trio.current_time() - self.run_context.origin

    async def emit(self, event: Event) -> None:
        """Send a facade-made event (run and python-step events) to the run's event stream."""
        if self.send_events is None:
            return
        try:
            await self.send_events.send(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # nobody listens any more; the run goes on

    def cost_function(self, provider: Provider | None = None) -> Callable[[str | None, Any], float | None]:
        """``cost(model, usage)`` for the engine; a ``mock`` provider's calls cost nothing, and so
        do the replayed calls of a cassette recorded in mock mode."""
        recorded = getattr(provider, "recorded_name", None)
        if provider is not None and "mock" in (getattr(provider, "name", None), recorded):
            return _free
        overrides = self.spec.defaults.pricing or None

        def cost(model: str | None, usage: Any) -> float | None:
            if model is None:
                return None
            return cost_usd(model, usage, overrides)

        return cost


def _substep_count(step: Any) -> int | None:
    """How many sub-steps a composite step has (``None`` for other steps, or when unknown)."""
    if step.type == "claude_batch":
        return len(step.tasks) or len(step.items or ()) or None
    if step.type == "parallel_claude":
        return len(step.parallel_tasks) or None
    return None


def _free(model: str | None, usage: Any) -> float:
    return 0.0
