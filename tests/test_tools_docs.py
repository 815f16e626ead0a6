"""docs/tools.md and docs/step_types.md: every python example runs (mock mode)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _blocks(name: str) -> list[str]:
    text = (DOCS / name).read_text("utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize(("doc", "count"), [("tools.md", 3), ("step_types.md", 2)])
def test_every_python_example_runs(doc: str, count: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # runs write their outputs here
    blocks = _blocks(doc)
    assert len(blocks) == count
    for number, code in enumerate(blocks):
        namespace: dict = {"__name__": f"docs_{doc}_{number}"}
        exec(compile(code, f"{doc}[python block {number}]", "exec"), namespace)
        trio.run(namespace["main"])
