"""``sluiceway run FILE``: run a pipeline from the command line.

Exit codes: 0 ok; 1 a step failed (one line naming the step and the cause on
stderr; a traceback only with ``--debug``); 2 bad spec or flags (or a mode
that is not available); 130 interrupted (Ctrl-C, SIGINT) and 143 terminated
(SIGTERM, as ``docker stop`` and systemd send it), after every handler is
closed and the partial files are written.

``--web [HOST:PORT]`` also serves the run's live view (``sluiceway._web``):
its Cancel button cancels the same scope a signal does (exit 130).

SIGINT and SIGTERM: while the run is going, a trio signal receiver takes them
and cancels the run's scope, so each running step emits ``Cancelled``,
handlers flush and close, and ``result.json`` says ``cancelled``. A second
signal exits at once, without waiting for handlers to close. Outside that
window (loading, start-up) either signal ends the command with its exit code
and no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from typing import Any, Final, TextIO

import attrs
import trio
import yaml

from ._errors import AuthenticationError, SluicewayError, SpecError, StepError
from ._execution import (
    Mode,
    ModeUnavailableError,
    ResumeError,
    RunOptions,
    check_run_dir,
    execute,
    new_run_id,
    prepare,
)
from ._gc import tune_gc
from ._load import load
from ._result import RunResult, result_to_json
from .specs._check import did_you_mean
from .specs._validate import check_handler_ref

__all__ = ("describe_error", "format_summary", "parse_assignments", "run_command")

EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: The exit code for each signal that ends a run gracefully (128 + the signal's number).
_SIGNAL_EXIT: Final = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}


class _UsageError(SluicewayError):
    """A bad flag value (exit 2)."""


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs; values are read as YAML scalars (``true``, ``3``, ``text``)."""
    values: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise _UsageError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, dict | list) or value is None and raw.strip():
            value = raw  # only scalars; keep the text as written
        values[key] = value
    return values


def _first_line(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    # StepError / ProviderError keep the message without their "step 'x': " prefix
    message = getattr(error, "message", None)
    text = (message if isinstance(message, str) and message else str(error)).strip()
    return (text or type(error).__name__).splitlines()[0]


def describe_error(error: BaseException | None) -> str:
    """``Type: message`` (its first line): what failed, with the exception's type.

    A ``StepError`` only says which step failed and why, in its message, so its
    type is left out (``2 of 20 tasks failed: ...``).
    """
    if error is None:
        return "unknown error"
    line = _first_line(error)
    if type(error) is StepError or line == type(error).__name__:
        return line
    return f"{type(error).__name__}: {line}"


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


#: Stop reasons that are the ordinary end of an answer (anything else is shown in the summary).
_PLAIN_STOPS: Final = frozenset({None, "end_turn"})


def _stopped(response: Any) -> str:
    """``  stopped: max_turns``: a step that ended ok but not at the model's own end."""
    if response.status != "ok":
        return f"  stopped: {response.status}"
    if response.stop_reason not in _PLAIN_STOPS:
        return f"  stopped: {response.stop_reason}"
    return ""


def _failure_line(result: RunResult) -> str:
    """The one line that names a failed run's cause, with its type, and where its output is."""
    name = result.failed_step
    step = result.steps.get(name) if name is not None else None
    where = ""
    if step is not None and step.text_file and step.response is not None and (step.text or step.output):
        where = f"; partial output in {step.text_file}"
    elif result.result_file is not None:
        where = f"; details in {result.result_file}"
    return f"sluiceway run: step {name!r} failed: {describe_error(result.error)}{where}"


def format_summary(result: RunResult) -> str:
    """The run summary printed on stderr: totals, one line per step, then a failure's cause.

    A step that ended ok at a stop other than the model's own end (``max_turns``,
    ``max_tokens``...) says so on its line. A resumed run says what it replayed and what it called. A failed run ends with one line naming
    the failed step, the exception's type and message, and where its partial
    output is: the only place the cause is printed.
    """
    lines = []
    for name, step in result.steps.items():
        response = step.response
        if response is None:
            lines.append(f"  {name:<20} {step.status:<9}")
            continue
        usage = response.usage
        cost = "-" if response.cost_usd is None else f"${response.cost_usd:.5f}"
        stopped = _stopped(response) if step.status == "ok" else ""
        lines.append(
            f"  {name:<20} {step.status:<9} tokens {usage.input_tokens} in / {usage.output_tokens} out"
            f"  cost {cost}  first token {_fmt_seconds(response.metrics.time_to_first_token)}"
            f"  duration {_fmt_seconds(response.metrics.duration)}{stopped}"
        )
    usage = result.usage
    cost = "-" if result.cost_usd is None else f"${result.cost_usd:.5f}"
    mark = {"ok": "✓", "failed": "✗", "cancelled": "⨯"}[result.status]
    head = (
        f"{mark} {result.pipeline}: {result.status} — {len(result.steps)} step(s), "
        f"tokens {usage.input_tokens} in / {usage.output_tokens} out, cost {cost}, "
        f"{_fmt_seconds(result.duration)}  [{result.run_dir}]"
    )
    if result.resumed_from is not None:
        reused = result.reused
        reused_cost = "-" if reused.cost_usd is None else f"${reused.cost_usd:.5f}"
        lines.append(
            f"  resumed from {result.resumed_from}: {reused.responses} saved response(s) replayed "
            f"(cost {reused_cost} not paid again), {result.requests} model call(s) made"
        )
    tail = [_failure_line(result)] if result.status == "failed" else []
    return "\n".join([head, *lines, *tail])


class _Started:
    """A ``task_status`` that keeps what ``execute`` hands over (the live ``RunResult``)."""

    def __init__(self) -> None:
        self.value: RunResult | None = None

    def started(self, value: RunResult | None = None) -> None:
        self.value = value


class _Terminated(BaseException):
    """SIGTERM outside the run (loading, start-up): the counterpart of ``KeyboardInterrupt``."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


async def _run_with_signals(
    spec: Any, options: RunOptions, err: TextIO, web: Any = None
) -> tuple[RunResult | None, int | None]:
    """Run *spec*; SIGINT or SIGTERM cancels it cleanly, a second one exits at once.

    With *web* (a ``WebSession``), the run's events also go to its live view, whose
    Cancel button cancels the run like SIGINT; after the run, a signal ends the lingering view.

    Returns:
        The result, and the exit code of the signal that stopped the run (or None).
    """
    stopped_by: int | None = None
    live = _Started()
    run_done = False
    linger_scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        run_scope = trio.CancelScope()

        def stop(code: int) -> None:
            nonlocal stopped_by
            stopped_by = code
            run_scope.cancel()

        async def watch_signals(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with trio.open_signal_receiver(*_SIGNAL_EXIT) as signals:
                task_status.started()
                async for signum in signals:
                    if run_done:  # the run is over: a signal only ends the lingering web view
                        linger_scope.cancel()
                        continue
                    if stopped_by is not None:  # the second signal: do not wait for the cleanup
                        print("sluiceway run: second signal; exiting now", file=err, flush=True)
                        os._exit(_SIGNAL_EXIT[signal.Signals(signum)])
                    stop(_SIGNAL_EXIT[signal.Signals(signum)])

        await nursery.start(watch_signals)
        send_events = None
        if web is not None:
            send_events = await web.start(nursery, lambda: stop(EXIT_INTERRUPTED))
        result: RunResult | None = None
        with run_scope:
            result = await execute(spec, options, send_events=send_events, task_status=live)
        run_done = True
        if web is not None:
            finished = result if result is not None else live.value
            await web.finish(finished.run_dir if finished is not None else None, linger_scope)
        nursery.cancel_scope.cancel()
    return (result if result is not None else live.value), stopped_by


def _leaf(exc: BaseException) -> BaseException:
    """The single leaf of nested one-exception groups (trio nurseries wrap what they raise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.file`` with the flags ``_cli`` parsed; return the exit code."""
    debug = bool(getattr(args, "debug", False))
    err: TextIO = sys.stderr
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        try:
            return _run_command(args, err)
        except BaseExceptionGroup as group:
            if group.subgroup(_Terminated) is not None:
                raise _Terminated from None
            if group.subgroup(KeyboardInterrupt) is not None:
                raise KeyboardInterrupt from None
            raise _leaf(group) from None
    except KeyboardInterrupt:
        print("sluiceway run: interrupted", file=err)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("sluiceway run: terminated", file=err)
        return EXIT_TERMINATED
    except (SpecError, _UsageError, ModeUnavailableError, AuthenticationError, ResumeError) as exc:
        if debug:
            traceback.print_exception(exc, file=err)
        prefix = "" if isinstance(exc, SpecError) else "sluiceway run: "
        print(f"{prefix}{exc}", file=err)
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            traceback.print_exception(exc, file=err)
        print(f"sluiceway run: {type(exc).__name__}: {_first_line(exc)}", file=err)
        return EXIT_STEP_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)


def _count(flag: str, value: str, *, none: bool = False) -> int | None:
    """A flag's whole number >= 1 (or None for ``none`` when *none*); a usage error otherwise."""
    if none and value == "none":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        allowed = "a whole number >= 1" + (" or 'none'" if none else "")
        raise _UsageError(f"{flag} must be {allowed}, not {value!r}")
    return number


def _run_command(args: argparse.Namespace, err: TextIO) -> int:
    options = _run_options(args)
    web = None
    if getattr(args, "web", None) is not None:
        options = attrs.evolve(options, run_id=options.run_id or new_run_id())
        web = _web_session(args, options.run_id or "", err)
    spec = load(args.file)
    for key in options.variables:
        if key not in spec.variables:
            raise _UsageError(
                f"--set {key}: the spec has no variable {key!r}{did_you_mean(key, spec.variables)} "
                "(variables are declared under `variables:`)"
            )
    prepare(spec, options)  # bad conditions, handlers, callables: exit 2 before anything runs
    if options.resume is not None:
        check_run_dir(spec, options.resume)  # not a run folder, or another pipeline's: exit 2 at once
    tune_gc()  # start-up is over: freeze it, collect the young less often (see sluiceway._gc)
    result, stopped_by = trio.run(_run_with_signals, spec, options, err, web)
    return _report(args, result, stopped_by, err)


def _run_options(args: argparse.Namespace) -> RunOptions:
    """``run``'s flags as run options; a flag that cannot work is a usage error (exit 2)."""
    speed = getattr(args, "speed", None)
    if speed is not None and speed <= 0:
        raise _UsageError("--speed must be > 0")
    mode: Mode = getattr(args, "mode", None) or "mock"
    cassette = getattr(args, "cassette", None)
    if cassette and mode == "mock":
        mode = "replay"  # --cassette implies replay
    handler = getattr(args, "handler", None)
    if isinstance(handler, str):
        if (problem := check_handler_ref(handler)) is not None:
            raise _UsageError(f"--handler: {problem}")
        handler = (handler,)
    workspace = getattr(args, "workspace", None)
    if workspace is not None and not os.path.isdir(workspace):
        raise _UsageError(f"--workspace {workspace}: no such folder")
    live_options: dict[str, Any] = {}
    max_starting = getattr(args, "max_starting", None)
    if max_starting is not None:
        live_options["max_starting"] = _count("--max-starting", max_starting, none=True)
    per_client = getattr(args, "streams_per_client", None)
    if per_client is not None:
        live_options["streams_per_client"] = _count("--streams-per-client", per_client)
    if live_options and mode != "live":
        flags = " and ".join(f"--{k.replace('_', '-')}" for k in live_options)
        raise _UsageError(f"{flags}: live mode only (the mode is {mode})")
    return RunOptions(
        mode=mode,
        variables=parse_assignments(getattr(args, "set", None)),
        output_dir=getattr(args, "output_dir", None),
        workspace=workspace,
        handlers=tuple(handler) if handler else None,
        stream=not getattr(args, "no_stream", False),
        display=not getattr(args, "quiet", False),
        # with --json, stdout carries the result JSON only: console handlers write to stderr
        stdout=sys.stderr if getattr(args, "json", False) else None,
        cassette=cassette,
        record=getattr(args, "record", None),
        speed=speed if speed is not None else 1.0,
        instant=bool(getattr(args, "instant", False)),
        live_options=live_options,
        resume=getattr(args, "resume", None),
        executor=getattr(args, "executor", None),
    )


def _web_session(args: argparse.Namespace, run_id: str, err: TextIO) -> Any:
    """The live web view ``--web`` asks for; missing extras or a bad address are usage errors."""
    from ._cli_serve import WebSession, web_available

    missing = web_available()
    if missing:
        raise _UsageError(f"--web: {missing}")
    try:
        return WebSession(args.web, run_id, linger=getattr(args, "web_linger", 0.0) or 0.0, err=err)
    except ValueError as exc:
        raise _UsageError(f"--web {args.web!r}: {exc}") from None


def _report(args: argparse.Namespace, result: RunResult | None, stopped_by: int | None, err: TextIO) -> int:
    """Print the result (``--json`` on stdout, the summary on stderr); the exit code."""
    if result is not None and getattr(args, "json", False):
        sys.stdout.write(json.dumps(result_to_json(result), indent=2, default=str) + "\n")
        sys.stdout.flush()
    if result is not None:
        if result.status == "failed" and getattr(args, "debug", False) and result.error is not None:
            traceback.print_exception(result.error, file=err)
        print(format_summary(result), file=err)  # a failure's cause: its last line, only there
    if stopped_by is not None or result is None:
        where = f"; partial output kept in {result.run_dir}" if result is not None else ""
        how = "terminated" if stopped_by == EXIT_TERMINATED else "interrupted"
        print(f"sluiceway run: {how}{where}", file=err)
        return stopped_by or EXIT_INTERRUPTED
    if result.status == "failed":
        return EXIT_STEP_FAILED
    if result.status == "cancelled":
        return EXIT_INTERRUPTED
    return EXIT_OK
