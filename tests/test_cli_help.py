"""The CLI's own help: --version, the commands when none is given, help on every flag, and
docs/cli.md showing exactly what ``--help`` prints."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sluiceway._cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SLUICEWAY = str(Path(sys.executable).parent / "sluiceway")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="100")
    return subprocess.run([SLUICEWAY, *args], capture_output=True, text=True, env=env, timeout=60)


def test_version_is_the_distributions() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    done = cli("--version")
    assert (done.returncode, done.stdout) == (0, f"sluiceway {version}\n")


def test_no_command_lists_the_commands_and_exits_2() -> None:
    done = cli()
    assert done.returncode == 2
    assert done.stdout == ""
    for command in ("run", "validate", "migrate", "schema"):
        assert re.search(rf"^    {command}\s+\w", done.stderr, re.MULTILINE), done.stderr
    assert "exit codes:" in done.stderr


def _actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    out = []
    for action in parser._actions:  # argparse has no public walk over its actions
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out += [(f"{name} {dest}", a) for dest, a in _actions(child)]
        else:
            out.append((action.dest, action))
    return out


def test_every_flag_and_argument_has_help() -> None:
    missing = [name for name, action in _actions(build_parser()) if not action.help]
    assert missing == []


def test_help_has_exit_codes_and_two_examples() -> None:
    out = cli("run", "--help").stdout
    for code in ("0", "1", "2", "130", "143"):
        assert re.search(rf"^  {code} +\w", out, re.MULTILINE), code
    examples = out.split("examples:\n", 1)[1]
    assert len([ln for ln in examples.splitlines() if ln.startswith("  sluiceway run ")]) == 2


@pytest.mark.parametrize(
    ("intro", "args"),
    [("`sluiceway --help`", ("--help",)), ("`sluiceway run --help`:", ("run", "--help"))],
)
def test_docs_show_the_real_help(intro: str, args: tuple[str, ...]) -> None:
    docs = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    after = docs.split(intro, 1)[1]
    shown = after.split("```\n", 2)[1]
    assert shown == cli(*args).stdout
