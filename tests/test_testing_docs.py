"""docs/testing.md: every python example runs, and the printed report is what the page shows."""

from __future__ import annotations

import contextlib
import inspect
import io
import re
from pathlib import Path

import trio

from sluiceway.testing import StreamingRecorder, VirtualRunner

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text("utf-8"), flags=re.MULTILINE | re.DOTALL)


def _call(fn, tmp_path):
    recorder = StreamingRecorder()
    available = {
        "recorder": recorder,
        "virtual_run": VirtualRunner(output_dir=tmp_path, recorder=recorder),
        "tmp_path": tmp_path,
    }
    kwargs = {name: available[name] for name in inspect.signature(fn).parameters}
    if inspect.iscoroutinefunction(fn):
        trio.run(lambda: fn(**kwargs))
    else:
        fn(**kwargs)


def test_every_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("python")
    assert len(blocks) >= 8
    namespace: dict = {"__name__": "docs_testing"}
    printed = io.StringIO()
    for number, code in enumerate(blocks):
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{DOC.name}[python block {number}]", "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    # the pytest-style examples: the fixtures ones, the registry one, and the given ones
    names = {t.__name__ for t in tests}
    assert {"test_greeting", "test_greeting_async", "test_simple_handler_conforms"} <= names
    for fn in tests:
        if not hasattr(fn, "hypothesis"):  # the @given ones already ran in the block
            _call(fn, tmp_path)
    # The report the page shows is the one check_handler prints (up to the elided repr).
    (shown,) = _blocks("text")
    out = printed.getvalue()
    for line in shown.splitlines():
        prefix = line.split("...")[0]
        assert prefix in out, f"the page shows {line!r}, but the report is:\n{out}"
