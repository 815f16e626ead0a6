"""Running a spec: the facade's executor and its step types.

The engine streams one model call (``stream_step``) and knows nothing of specs;
this package turns each step of a ``Pipeline`` into providers, requests,
handlers and engine calls, and runs the steps in order. Its modules, each
importing only those listed before it:

- ``_modes``: ``RunOptions``, the modes, and the provider each mode opens.
- ``_prepare``: the pre-run checks (``prepare``), and each step's handler refs and options.
- ``_state``: ``ExecutionState``, what one run shares across its steps.
- ``_files``: the run's folders, ``output_to_file``, ``result.json``.
- ``_prompts``, ``_model_call``, ``_consumers``: what the step types share
  (prompt rendering; options, request, tools and ``stream_step``; handlers).
- ``_saved``, ``_resume``: each model call's response saved as it finishes (the
  store, and what is saved where), and replayed by a run that resumes another
  (``resume=RUN_DIR``).
- ``_step_*``: one module per step type (``_composite`` for batch and parallel);
  ``_runners`` maps each type to its runner.
- ``_schedule``: the step order, conditions, passthrough inputs, timeouts, results.
- ``_execute``: ``execute``, from preparation to ``result.json`` and ``RunFinished``.

The rest of the facade imports from here.
"""

from ._execute import execute as execute
from ._model_call import DEFAULT_MODEL as DEFAULT_MODEL
from ._model_call import DEFAULT_TOOL_TURNS as DEFAULT_TOOL_TURNS
from ._modes import Mode as Mode
from ._modes import ModeUnavailableError as ModeUnavailableError
from ._modes import RunOptions as RunOptions
from ._modes import open_mode_provider as open_mode_provider
from ._prepare import prepare as prepare
from ._resume import ResumeError as ResumeError
from ._resume import check_run_dir as check_run_dir
from ._saved import ResumeWarning as ResumeWarning
from ._state import new_run_id as new_run_id
from ._step_python import StepContext as StepContext
