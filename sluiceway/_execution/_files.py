"""What a run writes: its folders, each step's ``output_to_file``, and its run files.

A run's files live in ``<output_dir>/<run_id>/``: one ``<step>.txt`` per step
that ran, and ``result.json`` (written atomically: a temporary file, then
``os.replace``), also when the run failed or was cancelled.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from pathlib import Path
from typing import Any, Final

from .._errors import StepError
from .._result import result_to_json
from ..engine import Response
from ..specs import Pipeline, TemplateError, render
from ._modes import RunOptions
from ._state import ExecutionState

__all__ = (
    "DEFAULT_OUTPUT_DIR",
    "OutputFileError",
    "output_file_target",
    "resolve_dirs",
    "write_output_file",
    "write_run_files",
)

#: Where runs write when neither the caller nor the spec says (relative to the cwd).
DEFAULT_OUTPUT_DIR: Final = "outputs"


def resolve_dirs(spec: Pipeline, options: RunOptions) -> tuple[Path, Path]:
    """The run's resolved ``(workspace, output folder)``, from the options, else the spec."""
    spec_dir = Path(spec.source).parent if spec.source and spec.source != "<string>" else Path.cwd()
    if options.workspace is not None:
        workspace = Path(options.workspace)
    elif spec.workspace_dir is not None:
        workspace = spec_dir / spec.workspace_dir
    else:
        workspace = spec_dir
    out_root = Path(options.output_dir or spec.output_dir or DEFAULT_OUTPUT_DIR)
    return workspace.resolve(), out_root.resolve()


class OutputFileError(StepError):
    """``output_to_file`` could not be written; the step's response is kept."""

    def __init__(self, message: str, *, step: str, response: Response) -> None:
        super().__init__(message, step=step)
        self.response = response


def output_file_target(state: ExecutionState, step: Any) -> Path:
    """The file ``output_to_file`` names: its template rendered, under the output folder.

    Rendered like a prompt (``{{execution_id}}``, ``{{step}}``, ``{{vars.x}}``...),
    so each run can write its own file. A relative path may not leave the
    output folder, neither with ``..`` nor through a symbolic link; an absolute
    path is written as it is. Called before the step runs: a path that escapes
    fails the step before its first model call.

    Raises:
        StepError: the template has no value, the path names no file, or it escapes.
    """
    raw = step.output_to_file
    try:
        rendered = render(raw, state.template_values(step.name))
    except TemplateError as exc:
        raise StepError(f"output_to_file template: {exc}", step=step.name) from exc
    shown = repr(rendered) if rendered == raw else f"{rendered!r} (from {raw!r})"
    target = Path(rendered)
    if target.is_absolute():
        return target
    root = state.out_root.resolve()
    lexical = posixpath.normpath(rendered.replace(os.sep, "/"))
    if lexical in ("", "."):
        raise StepError(f"output_to_file {shown} names no file", step=step.name)
    target = (root / rendered).resolve()
    if lexical == ".." or lexical.startswith("../") or not target.is_relative_to(root):
        raise StepError(f"output_to_file {shown} escapes the output folder {str(root)!r}", step=step.name)
    return target


def write_output_file(state: ExecutionState, step: Any, response: Response, target: Path | None = None) -> Path:
    """Write the step's text (or its output as JSON) to ``output_to_file``.

    *target* is ``output_file_target``'s path, found before the step ran
    (found now when not given).

    Raises:
        OutputFileError: the file cannot be written, or its path escapes; the response is kept.
    """
    if target is None:
        try:
            target = output_file_target(state, step)
        except StepError as exc:
            raise OutputFileError(str(exc), step=step.name, response=response) from exc
    text = response.text
    if not text and response.output is not None:
        text = json.dumps(response.output, indent=2, default=str)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputFileError(f"output_to_file {str(target)!r}: {exc}", step=step.name, response=response) from exc
    return target


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\-\[\]]", "_", name) or "_"


def write_run_files(state: ExecutionState) -> None:
    """Write each step's text and ``result.json`` into the run's folder."""
    result = state.result
    run_dir = state.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, step in result.steps.items():
        if step.response is None and step.status == "skipped":
            continue
        path = run_dir / f"{_safe_name(name)}.txt"
        text = step.text
        if not text and step.output is not None:  # composite steps: their outputs, in task order
            text = json.dumps(step.output, indent=2, default=str)
        path.write_text(text, encoding="utf-8")
        step.text_file = str(path)
    result.result_file = run_dir / "result.json"
    tmp = run_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result_to_json(result), indent=2, default=str), encoding="utf-8")
    os.replace(tmp, result.result_file)
