"""tune_gc: freeze start-up, raise the young threshold (never lower it), keep the others."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sluiceway

SLUICEWAY = str(Path(sys.executable).parent / "sluiceway")


def _in_child(code: str) -> str:
    # the collector is process-wide: each case runs in its own interpreter
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_freezes_what_is_alive_and_raises_the_young_threshold() -> None:
    out = _in_child(
        """
        import gc, sluiceway
        gc.set_threshold(700, 10, 10)
        before = gc.get_freeze_count()
        sluiceway.tune_gc()
        print(before, gc.get_freeze_count() > 1000, gc.get_threshold(), len(gc.get_objects()) < 1000)
        """
    )
    assert out == "0 True (10000, 10, 10) True"


def test_never_lowers_a_threshold_and_can_skip_the_freeze() -> None:
    out = _in_child(
        """
        import gc, sluiceway
        gc.set_threshold(50000, 20, 30)
        sluiceway.tune_gc(young_threshold=2000, freeze=False)
        print(gc.get_freeze_count(), gc.get_threshold())
        """
    )
    assert out == "0 (50000, 20, 30)"


def test_cli_run_tunes_the_collector_before_running(tmp_path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: p\nsteps:\n  - name: probe\n    type: python\n    callable: probe_mod:probe\n", encoding="utf-8"
    )
    (tmp_path / "probe_mod.py").write_text(
        "import gc\n\ndef probe(ctx):\n    return f'{gc.get_threshold()[0]} {gc.get_freeze_count() > 0}'\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [SLUICEWAY, "run", "--json", str(pipeline)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "10000 True" in done.stdout


def test_bad_threshold_is_refused_before_touching_anything() -> None:
    before = gc.get_threshold()
    with pytest.raises(ValueError, match="young_threshold"):
        sluiceway.tune_gc(young_threshold=0)
    assert gc.get_threshold() == before
