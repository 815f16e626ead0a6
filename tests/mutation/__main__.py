"""Command line of the mutation profile; see the package docstring and tests/MUTATION.md."""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = Path(__file__).with_name("map.toml")
DOC = ROOT / "tests" / "MUTATION.md"
STAGES = ROOT / ".mutation"
# the package's folders and where they sit in the installed package
TREES = {
    "sluiceway": "src/sluiceway",
    "engine": "src/sluiceway/engine",
    "providers": "src/sluiceway/providers",
    "handlers": "src/sluiceway/handlers",
    "specs": "src/sluiceway/specs",
    "tools": "src/sluiceway/tools",
    "tests": "tests",
}
SKIP = {"__pycache__", "mutation", ".hypothesis", ".pytest_cache"}

KILLED = {1, 3}
TIMEOUT = {36, -24, 24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


@dataclass
class Profile:
    """map.toml read: the settings, module -> test files, and the equivalent mutants."""

    max_children: int
    timeout_constant: float
    timeout_multiplier: float
    pytest_args: list[str]
    modules: dict[str, list[str]]
    equivalent: dict[str, str]
    deselect: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Profile:
        data = tomllib.loads(MAP.read_text("utf-8"))
        s = data["settings"]
        return cls(
            max_children=s["max_children"],
            timeout_constant=s["timeout_constant"],
            timeout_multiplier=s["timeout_multiplier"],
            pytest_args=s["pytest_args"],
            modules=data["modules"],
            equivalent=data.get("equivalent", {}),
            deselect=data.get("deselect", {}),
        )


@dataclass
class Tally:
    """One module's (or folder's) mutants by outcome."""

    killed: int = 0
    timeout: int = 0
    survived: list[str] = field(default_factory=list)
    no_tests: list[str] = field(default_factory=list)
    equivalent: int = 0
    unchecked: int = 0
    other: list[str] = field(default_factory=list)
    ran: bool = True

    @property
    def total(self) -> int:
        return (
            self.killed
            + self.timeout
            + len(self.survived)
            + len(self.no_tests)
            + self.equivalent
            + self.unchecked
            + len(self.other)
        )

    @property
    def judged(self) -> int:
        """Non-equivalent mutants with a verdict: the score's denominator."""
        return (
            self.killed + self.timeout + len(self.survived) + len(self.no_tests) + len(self.other)
        )

    @property
    def score(self) -> float:
        return 100.0 * (self.killed + self.timeout) / self.judged if self.judged else 100.0

    def add(self, other: Tally) -> None:
        self.killed += other.killed
        self.timeout += other.timeout
        self.survived += other.survived
        self.no_tests += other.no_tests
        self.equivalent += other.equivalent
        self.unchecked += other.unchecked
        self.other += other.other
        self.ran |= other.ran


def slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def stage_dir(module: str) -> Path:
    return STAGES / slug(module)


def staged_path(module: str) -> str:
    folder, name = module.split("/", 1)
    return f"{TREES[folder]}/{name}"


def _files(top: Path, nested: set[str]) -> Iterator[Path]:
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top)
        if set(rel.parts) & SKIP or (rel.parts and rel.parts[0] in nested):
            continue
        if path.is_file() and path.suffix not in {".pyc"}:
            yield rel


def sync(stage: Path) -> None:
    """Copy the package and the tests into the stage; only changed files, so mutmut's cache holds."""
    for folder, target in TREES.items():
        source = ROOT / folder
        dest = stage / target
        # the subpackages staged inside src/sluiceway are synced on their own
        nested = {
            Path(t).name
            for f, t in TREES.items()
            if f not in {folder, "tests"} and Path(t).parent == Path(target)
        }
        wanted = set(_files(source, set()))
        for rel in wanted:
            out = dest / rel
            if not out.exists() or not filecmp.cmp(source / rel, out, shallow=False):
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / rel, out)
        if dest.exists():
            for rel in set(_files(dest, nested)) - wanted:
                (dest / rel).unlink()


#: The suite's xdist options (pyproject's addopts): a mutant's tests run in one process, as mutmut needs.
XDIST_OPTIONS = " -n auto --dist loadfile"


def _pytest_section() -> str:
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    start = text.index("[tool.pytest.ini_options]")
    end = text.find("\n[", start + 1)
    section = text[start : end if end != -1 else len(text)].strip() + "\n"
    if XDIST_OPTIONS not in section:
        raise SystemExit(f"pyproject's pytest addopts no longer hold {XDIST_OPTIONS.strip()!r}: update XDIST_OPTIONS")
    return section.replace(XDIST_OPTIONS, "")


def write_config(stage: Path, module: str, tests: list[str], profile: Profile) -> None:
    mutmut = {
        "source_paths": ["src"],
        "only_mutate": [staged_path(module)],
        "pytest_add_cli_args": [
            *profile.pytest_args,
            *(arg for test in profile.deselect.get(module, []) for arg in ("--deselect", test)),
        ],
        "pytest_add_cli_args_test_selection": tests,
        "timeout_constant": profile.timeout_constant,
        "timeout_multiplier": profile.timeout_multiplier,
        "use_git_change_detection": False,
    }
    lines = [_pytest_section(), "[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in mutmut.items()]
    config = stage / "pyproject.toml"
    text = "\n".join(lines) + "\n"
    if not config.exists() or config.read_text("utf-8") != text:
        config.write_text(text, "utf-8")


def _env() -> dict[str, str]:
    return {**os.environ, "HYPOTHESIS_PROFILE": "mutation", "PYTHONDONTWRITEBYTECODE": "1"}


def _mutmut() -> str:
    return str(Path(sys.executable).with_name("mutmut"))


def run_module(module: str, profile: Profile, names: Iterable[str] = ()) -> float:
    stage = stage_dir(module)
    stage.mkdir(parents=True, exist_ok=True)
    sync(stage)
    write_config(stage, module, profile.modules[module], profile)
    names = list(names)
    started = time.monotonic()
    with open(stage / "mutmut.log", "a", encoding="utf-8") as log:
        log.write(f"\n=== mutmut run {' '.join(names)} at {time.ctime()}\n")
        log.flush()
        cmd = [_mutmut(), "run", "--max-children", str(profile.max_children), *names]
        code = subprocess.run(
            cmd, cwd=stage, env=_env(), stdout=log, stderr=subprocess.STDOUT
        ).returncode
    elapsed = time.monotonic() - started
    timing = stage / "timing.json"
    spent = json.loads(timing.read_text()) if timing.exists() else {"seconds": 0.0}
    spent["seconds"] += elapsed
    timing.write_text(json.dumps(spent))
    tally = tally_module(module, profile)
    print(
        f"{module}: exit {code}, {tally.total} mutants, {tally.killed + tally.timeout} killed, "
        f"{len(tally.survived) + len(tally.no_tests)} survived, {tally.unchecked} unchecked, "
        f"score {tally.score:.1f}% ({elapsed:.0f} s)",
        flush=True,
    )
    return elapsed


def tally_module(module: str, profile: Profile) -> Tally:
    tally = Tally()
    meta = stage_dir(module) / "mutants" / (staged_path(module) + ".meta")
    if not meta.exists():
        tally.ran = False
        return tally
    codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    for name, code in sorted(codes.items()):
        if name in profile.equivalent:
            tally.equivalent += 1
        elif code is None:
            tally.unchecked += 1
        elif code in KILLED:
            tally.killed += 1
        elif code in TIMEOUT:
            tally.timeout += 1
        elif code in SURVIVED:
            tally.survived.append(name)
        elif code in NO_TESTS:
            tally.no_tests.append(name)
        else:
            tally.other.append(f"{name} (exit {code})")
    return tally


def _selected(profile: Profile, wanted: list[str]) -> list[str]:
    if not wanted:
        return list(profile.modules)
    unknown = [m for m in wanted if m not in profile.modules]
    if unknown:
        raise SystemExit(f"not in {MAP.name}: {', '.join(unknown)}")
    return wanted


def cmd_run(args: argparse.Namespace) -> None:
    profile = Profile.load()
    total = 0.0
    for module in _selected(profile, args.modules):
        total += run_module(module, profile)
    print(f"done in {total / 60:.1f} min")


def cmd_retest(args: argparse.Namespace) -> None:
    profile = Profile.load()
    for module in _selected(profile, args.modules):
        tally = tally_module(module, profile)
        names = tally.survived + tally.no_tests
        if names:
            run_module(module, profile, names)


def _show(module: str, name: str) -> str:
    shown = subprocess.run(
        [_mutmut(), "show", name], cwd=stage_dir(module), env=_env(), capture_output=True, text=True
    )
    return shown.stdout.strip()


def cmd_report(args: argparse.Namespace) -> None:
    profile = Profile.load()
    folders: dict[str, Tally] = {}
    rows = []
    seconds = 0.0
    for module in _selected(profile, args.modules):
        tally = tally_module(module, profile)
        folders.setdefault(module.split("/")[0], Tally(ran=False)).add(tally)
        timing = stage_dir(module) / "timing.json"
        seconds += json.loads(timing.read_text())["seconds"] if timing.exists() else 0.0
        rows.append((module, tally))
    out = [
        "| module | mutants | killed | timeout | survived | no tests | equivalent | unchecked | score |"
    ]
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    everything = Tally(ran=False)
    for name, tally in [*rows, *[(f"**{f}/**", t) for f, t in folders.items()]]:
        if not tally.ran:
            out.append(f"| {name} | not run yet | | | | | | | |")
            continue
        out.append(
            f"| {name} | {tally.total} | {tally.killed} | {tally.timeout} | {len(tally.survived)} | "
            f"{len(tally.no_tests)} | {tally.equivalent} | {tally.unchecked} | {tally.score:.1f}% |"
        )
    for tally in folders.values():
        everything.add(tally)
    out.append(
        f"| **all** | {everything.total} | {everything.killed} | {everything.timeout} | "
        f"{len(everything.survived)} | {len(everything.no_tests)} | {everything.equivalent} | "
        f"{everything.unchecked} | {everything.score:.1f}% |"
    )
    out.append(f"\nmutmut time, summed over the modules: {seconds / 60:.1f} min")
    print("\n".join(out))
    if args.write:
        survivors = [
            f"- `{name}`"
            for _, tally in rows
            for name in tally.survived + tally.no_tests + tally.other
        ]
        equivalents = [f"- `{name}`: {why}" for name, why in profile.equivalent.items()]
        text = DOC.read_text("utf-8")
        text = _replace(text, "results", "\n".join(out))
        text = _replace(text, "equivalent", "\n".join(equivalents) or "(none)")
        text = _replace(text, "survivors", "\n".join(survivors) or "(none)")
        DOC.write_text(text, "utf-8")
    if args.survivors:
        for module, tally in rows:
            for name in tally.survived + tally.no_tests + tally.other:
                print(f"\n## {name}\n{_show(module, name.split(' ')[0])}")


def _replace(text: str, part: str, body: str) -> str:
    start, end = (
        f"<!-- {part}: generated by python -m tests.mutation report --write -->",
        f"<!-- /{part} -->",
    )
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__)
    sub = parser.add_subparsers(required=True)
    run = sub.add_parser("run", help="mutate the modules (all in map.toml by default); resumes")
    run.add_argument("modules", nargs="*")
    run.set_defaults(func=cmd_run)
    retest = sub.add_parser("retest", help="run the surviving mutants again, after new tests")
    retest.add_argument("modules", nargs="*")
    retest.set_defaults(func=cmd_retest)
    report = sub.add_parser("report", help="the score table (and the survivors' diffs)")
    report.add_argument("modules", nargs="*")
    report.add_argument("--survivors", action="store_true", help="print each survivor's diff")
    report.add_argument(
        "--write", action="store_true", help="refresh the tables in tests/MUTATION.md"
    )
    report.set_defaults(func=cmd_report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
