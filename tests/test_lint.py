"""House rules that a linter can check: ruff, flake8-async, and the package's hard bans."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("sluiceway", "engine", "providers", "handlers", "specs", "tools")
# The ASYNC1xx rules (trio misuse). The ASYNC9xx "every path must checkpoint" rules are off on
# purpose: the hot path takes the send_nowait/receive_nowait fast paths without a checkpoint (STYLE.md).
FLAKE8_ASYNC_ENABLED = "ASYNC1"
# ASYNC114: only a hint for the ASYNC113 check's configuration.
# ASYNC124: protocol methods (Toolbox.run...) must stay async even when a body has no await.
FLAKE8_ASYNC_DISABLED = "ASYNC114,ASYNC124"


def _package_files() -> list[pathlib.Path]:
    return sorted(p for d in PACKAGE_DIRS for p in (ROOT / d).rglob("*.py"))


def _tool(name: str) -> str:
    path = pathlib.Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def test_ruff_is_clean() -> None:
    proc = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_flake8_async_is_clean() -> None:
    # flake8-async parses every file with libcst, which is slow: one process per core, side by side.
    files = [str(p.relative_to(ROOT)) for p in _package_files()]
    workers = max(1, min(os.cpu_count() or 1, 4))
    chunks = [files[i::workers] for i in range(workers)]
    command = [_tool("flake8-async"), f"--enable={FLAKE8_ASYNC_ENABLED}", f"--disable={FLAKE8_ASYNC_DISABLED}"]
    procs = [
        subprocess.Popen([*command, *chunk], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for chunk in chunks
    ]
    assert sum(len(chunk) for chunk in chunks) == len(files) > 0
    for proc in procs:
        out, err = proc.communicate()
        assert proc.returncode == 0, out + err
        assert out.strip() == "", out


# sluiceway.aio, the asyncio bridge, is the one place in the package that may import asyncio.
ASYNCIO_ALLOWED = ROOT / "sluiceway" / "aio"


def test_no_asyncio_and_no_unbounded_channels_in_the_package() -> None:
    asyncio_import = re.compile(r"^\s*(import asyncio|from asyncio)")
    unbounded = re.compile(r"open_memory_channel\([^)]*(math\.)?inf\b")
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in _package_files()
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if unbounded.search(line) or (asyncio_import.search(line) and not p.is_relative_to(ASYNCIO_ALLOWED))
    ]
    assert hits == []
    bridge = [p for p in _package_files() if p.is_relative_to(ASYNCIO_ALLOWED)]
    assert any(asyncio_import.search(line) for p in bridge for line in p.read_text(encoding="utf-8").splitlines())
