"""Run results: ``RunResult`` / ``StepResult`` and their JSON form (``result.json``, ``--json``).

The JSON schema is documented in ``docs/cli.md``; ``result_to_json`` is its one writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs

from ._errors import PipelineError, StepError
from .engine import Metrics, Response, Usage

__all__ = ("RESULT_FORMAT", "Reuse", "RunResult", "StepResult", "result_to_json")

#: Version of the result JSON; bumped on incompatible changes.
RESULT_FORMAT = 1

StepStatus = Literal["ok", "failed", "cancelled", "skipped"]
RunStatus = Literal["ok", "failed", "cancelled"]


@attrs.define(kw_only=True)
class StepResult:
    """How one step ended."""

    status: StepStatus
    """``ok``, ``failed``, ``cancelled``, or ``skipped`` (its condition was false)."""
    response: Response | None = None
    """The step's response; for a failed or cancelled step, what it produced before."""
    error: BaseException | None = None
    """The error a failed step raised."""
    type: str = "claude"
    """The spec's step type."""
    text_file: str | None = None
    """The ``<run_dir>/<step>.txt`` file holding the step's text, when written."""
    output_file: str | None = None
    """The ``output_to_file`` path, when the step has one and it was written."""

    @property
    def text(self) -> str:
        """The step's text (``""`` when there is no response)."""
        return self.response.text if self.response is not None else ""

    @property
    def output(self) -> Any:
        """The step's structured output (a python step's return value, ...)."""
        return self.response.output if self.response is not None else None


@attrs.define(kw_only=True)
class Reuse:
    """What a resumed run took from the run it resumes instead of calling the model again."""

    responses: int = 0
    """Saved responses replayed (batch tasks and whole steps)."""
    requests: int = 0
    """The model calls those responses hold (one per assistant turn)."""
    usage: Usage = Usage()
    """Their usage, summed (paid by the earlier run)."""
    cost_usd: float | None = 0.0
    """Their cost, summed; ``None`` when a price is unknown."""


@attrs.define(kw_only=True)
class RunResult:
    """The result of one pipeline run.

    ``handlers[step]`` holds the handler instances the step used (closed by then),
    so a ``buffer`` handler's events stay readable: ``result.handlers["draft"][0].text()``.
    """

    run_id: str
    """The run's id (``{{execution_id}}``)."""
    pipeline: str
    """The pipeline's name."""
    status: RunStatus = "ok"
    """``ok``, ``failed`` (a step failed) or ``cancelled``."""
    steps: dict[str, StepResult] = attrs.field(factory=dict)
    """Step name -> result, in the order the steps ended."""
    handlers: dict[str, list[Any]] = attrs.field(factory=dict)
    """Step name -> the handler instances it streamed to (already closed)."""
    run_dir: Path | None = None
    """``OUTPUT_DIR/<run_id>``: holds ``result.json`` and one ``<step>.txt`` per step."""
    result_file: Path | None = None
    """The ``result.json`` path, once written."""
    started_at: float = 0.0
    """Wall-clock start (``time.time()``)."""
    duration: float = 0.0
    """Seconds from start to end, on trio's clock."""
    error: BaseException | None = None
    """The first failing step's error, or ``None``."""
    failed_step: str | None = None
    """The name of the step that failed, if any."""
    requests: int = 0
    """Model calls this run made (retries included; a replayed response is no call)."""
    resumed_from: Path | None = None
    """The folder of the run this one resumed (``resume=RUN_DIR``), or ``None``."""
    reused: Reuse = attrs.field(factory=Reuse)
    """What this run replayed from *resumed_from* instead of paying for it again."""
    reused_by_step: dict[str, int] = attrs.field(factory=dict)
    """Step name -> how many of its responses (batch tasks, or the step's own) were replayed."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def usage(self) -> Usage:
        """Usage summed over every step."""
        total = Usage()
        for step in self.steps.values():
            if step.response is not None:
                total = total + step.response.usage
        return total

    @property
    def cost_usd(self) -> float | None:
        """Cost summed over the steps that have one; ``None`` when none has."""
        costs = [
            s.response.cost_usd
            for s in self.steps.values()
            if s.response is not None and s.response.cost_usd is not None
        ]
        return sum(costs) if costs else None

    def raise_for_status(self) -> RunResult:
        """Raise ``PipelineError`` (one leaf per failed step) unless the run was ok.

        A cancelled run with no failed step raises a ``PipelineError`` whose leaf
        is a ``StepError`` saying it was cancelled. Returns ``self`` when ok.
        """
        if self.status == "ok":
            return self
        leaves: list[Exception] = []
        for name, step in self.steps.items():
            if step.status == "failed":
                err = step.error
                leaves.append(
                    err if isinstance(err, Exception) else StepError(str(err), step=name)
                )
        if not leaves:
            leaves.append(StepError("the run was cancelled", step=self.failed_step or ""))
        raise PipelineError(f"pipeline {self.pipeline!r} {self.status}", leaves)


def _usage_json(usage: Usage) -> dict[str, int]:
    return attrs.asdict(usage)


def _metrics_json(metrics: Metrics) -> dict[str, Any]:
    return attrs.asdict(metrics)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if attrs.has(type(value)):
        return _jsonable(attrs.asdict(value))
    return repr(value)


def step_to_json(step: StepResult, reused: int = 0) -> dict[str, Any]:
    """The JSON object of one step (see ``docs/cli.md``); *reused*: its responses replayed."""
    response = step.response or Response()
    return {
        "status": step.status,
        "type": step.type,
        "text": response.text,
        "output": _jsonable(response.output),
        "usage": _usage_json(response.usage),
        "cost_usd": response.cost_usd,
        "model": response.model,
        "stop_reason": response.stop_reason,
        "response_status": response.status,
        "metrics": _metrics_json(response.metrics),
        "error": None if step.error is None else str(step.error) or type(step.error).__name__,
        "text_file": step.text_file,
        "output_file": step.output_file,
        "reused": reused,
    }


def result_to_json(result: RunResult) -> dict[str, Any]:
    """The run's JSON object: what ``result.json`` holds and ``--json`` prints."""
    return {
        "format": RESULT_FORMAT,
        "run_id": result.run_id,
        "pipeline": result.pipeline,
        "status": result.status,
        "started_at": result.started_at,
        "duration": result.duration,
        "failed_step": result.failed_step,
        "error": None if result.error is None else str(result.error) or type(result.error).__name__,
        "usage": _usage_json(result.usage),
        "cost_usd": result.cost_usd,
        "run_dir": None if result.run_dir is None else str(result.run_dir),
        "resumed_from": None if result.resumed_from is None else str(result.resumed_from),
        "paid": _paid_json(result),
        "reused": _reuse_json(result.reused),
        "steps": {name: step_to_json(step, result.reused_by_step.get(name, 0)) for name, step in result.steps.items()},
    }


def _reuse_json(reuse: Reuse) -> dict[str, Any]:
    return {
        "responses": reuse.responses,
        "requests": reuse.requests,
        "usage": _usage_json(reuse.usage),
        "cost_usd": reuse.cost_usd,
    }


def _paid_json(result: RunResult) -> dict[str, Any]:
    """What this run paid: its requests, and the totals less what it reused."""
    usage, reused = result.usage, result.reused.usage
    paid = Usage(
        max(usage.input_tokens - reused.input_tokens, 0),
        max(usage.output_tokens - reused.output_tokens, 0),
        max(usage.cache_creation_input_tokens - reused.cache_creation_input_tokens, 0),
        max(usage.cache_read_input_tokens - reused.cache_read_input_tokens, 0),
    )
    cost = result.cost_usd
    if cost is not None and result.reused.cost_usd is not None:
        cost = max(round(cost - result.reused.cost_usd, 12), 0.0)  # no float noise from the subtraction
    elif result.reused.responses:
        cost = None
    return {"requests": result.requests, "usage": _usage_json(paid), "cost_usd": cost}
