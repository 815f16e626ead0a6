"""The ``sluiceway`` command: ``run``, ``validate``, ``migrate``, ``schema``.

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="sluiceway", description="Streaming LLM pipelines on trio."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline (mock mode by default; no API key needed)")
    run.add_argument("file", metavar="FILE")
    run.add_argument("--mode", choices=("mock", "live", "replay"), default="mock")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="set",
        help="override a variable",
    )
    run.add_argument("--output-dir", metavar="DIR")
    run.add_argument("--workspace", metavar="DIR")
    run.add_argument("--handler", metavar="NAME", help="use this stream handler for every step")
    run.add_argument("--no-stream", action="store_true", help="do not stream to handlers")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--debug", action="store_true", help="show tracebacks")
    run.add_argument("--record", metavar="FILE", help="record a cassette (live mode)")
    run.add_argument("--cassette", metavar="FILE", help="the cassette to replay")
    run.add_argument("--speed", type=float, metavar="X", help="replay speed factor")
    run.add_argument("--instant", action="store_true", help="replay without delays")
    run.add_argument(
        "--max-starting", metavar="N", help="live: at most N calls building their requests at once (default 16; none)"
    )
    run.add_argument("--streams-per-client", metavar="N", help="live: open streams per SDK client (default 64)")

    validate = sub.add_parser("validate", help="check pipeline files; exit 2 if any is invalid")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--debug", action="store_true")

    migrate = sub.add_parser(
        "migrate", help="rewrite legacy forms into the canonical form, keeping comments"
    )
    migrate.add_argument("file", metavar="FILE")
    migrate.add_argument(
        "--write", action="store_true", help="rewrite FILE in place, keeping FILE.bak"
    )
    migrate.add_argument("--debug", action="store_true")

    schema = sub.add_parser("schema", help="print the JSON Schema (2020-12) of pipeline YAML")
    schema.add_argument("--debug", action="store_true")
    return parser


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
    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return _validate(args.files)
        if args.command == "migrate":
            return _migrate(args.file, args.write)
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
