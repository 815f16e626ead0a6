"""The ``sluiceway`` command: ``run``, ``validate``, ``migrate``, ``schema``, ``serve``.

Failures are lines on stderr and exit code 2; a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Final

from ._errors import SpecError

__all__ = ("build_parser", "main")

#: Exit code for invalid input (specs, flags), as argparse uses.
EXIT_INVALID: Final = 2


_EPILOG: Final = """\
exit codes:
  0    every step ended ok
  1    a step failed (one line on stderr; a traceback with --debug)
  2    a bad spec or bad flags (FILE:LINE:COL: field: message)
  130  interrupted (Ctrl-C): handlers closed, partial output and result.json kept
  143  terminated (SIGTERM): the same graceful end as Ctrl-C

examples:
  sluiceway run examples/hello.yaml                 # mock mode: no API key needed
  sluiceway run pipeline.yaml --mode live --set topic=trio --json > result.json
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sluiceway",
        description="Streaming LLM pipelines on trio: every token, message and tool call "
        "to your handlers as it happens.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sluiceway {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    _add_run(sub)
    _add_other_commands(sub)
    return parser


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sluiceway run``: its flags, in the order ``run --help`` shows them."""
    run = sub.add_parser(
        "run",
        help="run a pipeline (mock mode by default; no API key needed)",
        description="Run a pipeline, streaming every step's output to its handlers.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("file", metavar="FILE", help="the pipeline's YAML file")
    run.add_argument(
        "--mode",
        choices=("mock", "live", "replay"),
        default="mock",
        help="mock: embedded, scripted by each step's mock block (default); live: the "
        "Anthropic API (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL); replay: a cassette",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="set",
        help="set the spec's variable KEY (repeatable)",
    )
    run.add_argument(
        "--output-dir",
        metavar="DIR",
        help="where each run's folder (result.json, one file per step) goes "
        "(default: the spec's output_dir, else ./outputs)",
    )
    run.add_argument(
        "--workspace",
        metavar="DIR",
        help="where tools run and relative files resolve "
        "(default: the spec's workspace_dir, else the spec's folder)",
    )
    run.add_argument("--handler", metavar="NAME", help="use this stream handler for every step")
    run.add_argument("--no-stream", action="store_true", help="do not stream to handlers (each step shows one line when it ends)")
    run.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no default display for steps without a handler (their answers stay in "
        "outputs/run_*/STEP.txt and result.json)",
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    run.add_argument("--debug", action="store_true", help="show tracebacks")
    _add_run_sources(run)


def _add_run_sources(run: argparse.ArgumentParser) -> None:
    """``run``'s flags for where responses come from and go: resume, cassettes, live limits, Ray, web."""
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="resume an earlier run of this pipeline (its folder, outputs/run_*): the batch tasks "
        "and model steps it finished with the same inputs are replayed, not paid for again; the "
        "rest run (in a new run folder)",
    )
    run.add_argument("--record", metavar="FILE", help="record a cassette (live mode)")
    run.add_argument("--cassette", metavar="FILE", help="the cassette to replay (implies --mode replay)")
    run.add_argument("--speed", type=float, metavar="X", help="replay speed factor")
    run.add_argument("--instant", action="store_true", help="replay without delays")
    run.add_argument(
        "--max-starting",
        metavar="N",
        help="live: at most N calls building their requests at once (default 16; none)",
    )
    run.add_argument(
        "--streams-per-client", metavar="N", help="live: open streams per SDK client (default 64)"
    )
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="where every claude_batch step runs: here, or on Ray actors (needs the ray extra; "
        "docs/scale_out.md)",
    )
    run.add_argument(
        "--web",
        nargs="?",
        const="127.0.0.1:8765",
        metavar="HOST:PORT",
        help="serve a live view of the run (default 127.0.0.1:8765; port 0 picks one); "
        "prints its URL and the token that Cancel (and any non-loopback host) needs",
    )
    run.add_argument(
        "--web-linger",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --web: keep serving this long after the run ends (Ctrl-C stops it)",
    )


def _add_other_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``validate``, ``migrate``, ``schema`` and ``serve``."""
    validate = sub.add_parser(
        "validate",
        help="check pipeline files; exit 2 if any is invalid",
        description="Check pipeline files: every problem, with FILE:LINE:COL, at once.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="pipeline YAML files")
    validate.add_argument("--debug", action="store_true", help="show tracebacks")

    migrate = sub.add_parser(
        "migrate",
        help="rewrite legacy forms into the canonical form, keeping comments",
        description="Print (or write) FILE with every legacy form rewritten.",
    )
    migrate.add_argument("file", metavar="FILE", help="the pipeline's YAML file")
    migrate.add_argument(
        "--write",
        action="store_true",
        help="rewrite FILE in place, backing it up first (FILE.bak, or .bak.1... if taken)",
    )
    migrate.add_argument("--debug", action="store_true", help="show tracebacks")

    schema = sub.add_parser(
        "schema",
        help="print the JSON Schema (2020-12) of pipeline YAML",
        description="Print the JSON Schema (2020-12) of pipeline YAML, for editors.",
    )
    schema.add_argument("--debug", action="store_true", help="show tracebacks")

    serve = sub.add_parser(
        "serve",
        help="serve the web view of finished runs from their folders",
        description="Serve the web view of runs on disk: events.jsonl where --web wrote one, "
        "else each step's result from result.json. Ctrl-C stops it.",
    )
    serve.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="a run's folder, or a folder of run folders"
    )
    serve.add_argument(
        "--bind",
        default="127.0.0.1:8765",
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:8765); a non-loopback host needs the token",
    )
    serve.add_argument("--debug", action="store_true", help="show tracebacks")


def _print_spec_error(exc: SpecError) -> None:
    for issue in exc.issues:
        print(issue, file=sys.stderr)


def _print_warnings(caught: Sequence[warnings.WarningMessage]) -> None:
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)


def _validate(files: Sequence[str]) -> int:
    from ._load import load

    status = 0
    for file in files:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                load(file)
            except SpecError as exc:
                _print_warnings(caught)
                _print_spec_error(exc)
                status = EXIT_INVALID
                continue
        _print_warnings(caught)
        print(f"{file}: ok")
    return status


def _migrate(file: str, write: bool) -> int:
    from .specs._migrate import backup_path, migrate_file

    try:
        backup = backup_path(file)
        text = migrate_file(file, write=write)
    except SpecError as exc:
        _print_spec_error(exc)
        return EXIT_INVALID
    except OSError as exc:
        print(f"{file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    if not write:
        sys.stdout.write(text)
    elif os.path.lexists(backup):
        print(f"{file}: rewritten (original kept as {backup})", file=sys.stderr)
    else:
        print(f"{file}: already in the canonical form; nothing written", file=sys.stderr)
    return 0


def _show_one_line(
    message: Warning | str, category: type[Warning], *_: object, **__: object
) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from ._cli_run import run_command
    from .specs import SluicewayDeprecationWarning

    # Python hides DeprecationWarning outside __main__; a user running a legacy
    # spec should see each one, as one line, like `validate` prints them.
    with warnings.catch_warnings():
        warnings.simplefilter("always", SluicewayDeprecationWarning)
        warnings.showwarning = _show_one_line
        return run_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 invalid input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no command: say which there are
        parser.print_help(sys.stderr)
        return EXIT_INVALID
    try:
        if args.command == "validate":
            return _validate(args.files)
        if args.command == "migrate":
            return _migrate(args.file, args.write)
        if args.command == "serve":
            from ._cli_serve import serve_command

            return serve_command(args)
        if args.command == "schema":
            from .specs._schema import json_schema

            print(json.dumps(json_schema(), indent=2))
            return 0
        return _run(args)
    except SpecError as exc:
        if args.debug:
            raise
        _print_spec_error(exc)
        return EXIT_INVALID
    except OSError as exc:
        if args.debug:
            raise
        print(f"sluiceway {args.command}: {exc}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
