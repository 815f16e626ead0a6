"""Step type -> its runner: ``runner(state, step, consumers) -> Response``.

One module per step type (``_step_*``); the executor looks the runner up here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..engine import Response
from ._state import ExecutionState
from ._step_batch import run_batch_step
from ._step_claude import run_claude_step
from ._step_extract import run_extract_step
from ._step_llm import run_llm_step
from ._step_parallel import run_parallel_step
from ._step_python import run_python_step
from ._step_robust import run_robust_step
from ._step_session import run_session_step

__all__ = ("STEP_RUNNERS", "StepRunner")

StepRunner = Callable[[ExecutionState, Any, Sequence[Any]], Awaitable[Response]]

#: Step type -> runner. (Each runner takes its own step class, hence the ignores: the key
#: is that class's ``type``.)
STEP_RUNNERS: dict[str, StepRunner] = {
    "claude": run_claude_step,
    "claude_smart": run_claude_step,
    "claude_session": run_session_step,
    "claude_extract": run_extract_step,
    "claude_batch": run_batch_step,
    "claude_robust": run_robust_step,
    "parallel_claude": run_parallel_step,
    "llm": run_llm_step,
    "python": run_python_step,
}
