"""The docs speak to users: only the public API, and only the project's own words."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: A private module named in the docs: ``sluiceway._x`` or ``sluiceway.engine._x``.
PRIVATE = re.compile(r"\bsluiceway(?:\.[a-z]+)*\._[a-z_]+")
#: Where a private name is the point (the layout says which module is the error leaf).
ALLOWED = {("README.md", "sluiceway._errors")}


def test_no_page_names_a_private_module() -> None:
    found = [
        (page.name, match)
        for page in PAGES
        for match in PRIVATE.findall(page.read_text(encoding="utf-8"))
        if (page.name, match) not in ALLOWED
    ]
    assert found == []


def test_no_page_uses_words_a_user_cannot_know() -> None:
    # our planning documents ("the seeds", "seed 001") and tracker numbers; a random seed is fine
    words = re.compile(r"\bthe seeds\b|\bseeds'|\bseed \d+|\bseed documents?\b|pipeline_ex|LLM\.invoke!|\bissue \d+\b")
    found = [
        (page.name, line.strip())
        for page in PAGES
        for line in page.read_text(encoding="utf-8").splitlines()
        if words.search(line)
    ]
    assert found == []
